//! patrick's HTTP endpoint (hyper, HTTP/1.1): `POST /<project>/<config|code>`, answered in JSON
//! (`{"status", "message", "job"}`). Bounded like the gateway: at most [`MAX_CONNECTIONS`]
//! open, 10 s to send a request's headers (`crate::http_server`), the body read only up to
//! 1 MiB.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tau_proto::git::RepoKind;
use tau_proto::tns::keys;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{Answer, Patrick, webhook};

/// The most connections open at once.
pub const MAX_CONNECTIONS: usize = 256;
/// How long reading a body may take.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts webhooks until `shutdown`, then lets open connections finish (10 s at most).
pub async fn serve(patrick: Arc<Patrick>, listener: TcpListener, shutdown: CancellationToken) {
    let answer = move |request| {
        let patrick = patrick.clone();
        async move { answer(&patrick, request).await }
    };
    crate::http_server::serve("webhooks", listener, MAX_CONNECTIONS, answer, shutdown).await;
}

/// Routes one request: only `POST /<project>/<config|code>`.
async fn answer(patrick: &Patrick, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let mut segments = path.trim_start_matches('/').split('/');
    let target = match (segments.next(), segments.next(), segments.next()) {
        (Some(project), Some(kind), None) if keys::is_name(project) => {
            let kind = match kind {
                "config" => Some(RepoKind::Config),
                "code" => Some(RepoKind::Code),
                _ => None,
            };
            kind.map(|kind| (project.to_string(), kind))
        }
        _ => None,
    };
    let Some((project, kind)) = target else {
        return json(Answer::new(404, "webhooks go to /<project>/<config|code>"));
    };
    if request.method() != http::Method::POST {
        return json(Answer::new(405, "a webhook is a POST"));
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if let Some(length) = declared.filter(|&l| l > webhook::MAX_BODY) {
        return json(Answer::new(413, webhook::Refused::TooLarge(length).to_string()));
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, webhook::MAX_BODY).collect());
    let body = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            let message = format!("the webhook body is over {} bytes", webhook::MAX_BODY);
            return json(Answer::new(413, message));
        }
        Ok(Err(e)) => return json(Answer::new(400, format!("cannot read the body: {e}"))),
        Err(_) => return json(Answer::new(408, "the body took too long")),
    };
    json(patrick.webhook(&project, kind, &parts.headers, &body).await)
}

fn json(answer: Answer) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "status": answer.status,
        "message": answer.message,
        "job": answer.job,
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string() + "\n")));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}
