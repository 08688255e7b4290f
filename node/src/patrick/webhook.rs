//! A push webhook, as GitHub sends it and Gitea and Forgejo do: read, bounded and checked.
//!
//! A webhook is taken only when its signature is the HMAC-SHA256 of the exact body under the
//! repository's webhook secret, compared in constant time (`hmac`'s `verify_slice`). GitHub
//! signs in `X-Hub-Signature-256: sha256=<hex>`, Gitea in `X-Gitea-Signature: <hex>`, Forgejo
//! in `X-Forgejo-Signature: <hex>`; the event is named by `X-GitHub-Event`, `X-Gitea-Event` or
//! `X-Forgejo-Event`. The body is read only after the signature holds, and only its push
//! fields: the ref, the commit after the push, and whether the branch was deleted.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// The largest webhook body taken; a larger one is refused (413) unread.
pub const MAX_BODY: usize = 1 << 20;

/// Why a webhook was refused, each with the HTTP status patrick answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// No signature header, or one that is not hex (`401`).
    #[error(
        "the webhook is not signed (no X-Hub-Signature-256, X-Gitea-Signature or X-Forgejo-Signature)"
    )]
    Unsigned,
    /// The signature is not the HMAC of the body under the repository's secret (`401`).
    #[error("the webhook's signature does not match the repository's webhook secret")]
    BadSignature,
    /// Over [`MAX_BODY`] (`413`).
    #[error("the webhook body is {0} bytes; at most {MAX_BODY} are taken")]
    TooLarge(usize),
    /// Signed, but not a push event, or not one that names a commit (`400`).
    #[error("not a push event this service takes: {0}")]
    NotAPush(String),
}

impl Refused {
    /// The HTTP status patrick answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unsigned | Self::BadSignature => 401,
            Self::TooLarge(_) => 413,
            Self::NotAPush(_) => 400,
        }
    }
}

/// A checked push: which ref moved, and to what commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The branch, without `refs/heads/` (a tag push is refused: no branch deploys a tag).
    pub branch: String,
    /// The commit the branch points at now: 40 lower-case hex digits (SHA-1) or 64 (SHA-256).
    pub commit: String,
}

/// The headers a webhook's check needs, by lower-case name.
pub trait Headers {
    /// The value of header `name` (lower case), if present and text.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for http::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        http::HeaderMap::get(self, name)?.to_str().ok()
    }
}

impl Headers for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

/// Checks a webhook's size, signature (under `secret`) and event, then reads the push.
pub fn check(
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secret: &[u8],
) -> Result<Push, Refused> {
    if body.len() > MAX_BODY {
        return Err(Refused::TooLarge(body.len()));
    }
    let signature = signature(headers).ok_or(Refused::Unsigned)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| Refused::BadSignature)?;
    mac.update(body);
    mac.verify_slice(&signature).map_err(|_| Refused::BadSignature)?;
    let event = ["x-github-event", "x-gitea-event", "x-forgejo-event"]
        .iter()
        .find_map(|name| headers.get(name))
        .unwrap_or("");
    if event != "push" {
        return Err(Refused::NotAPush(format!("the event is {event:?}")));
    }
    push(body)
}

/// The signature the headers carry, decoded; None when absent or not hex.
fn signature(headers: &(impl Headers + ?Sized)) -> Option<Vec<u8>> {
    let hex_digits = match headers.get("x-hub-signature-256") {
        Some(value) => value.strip_prefix("sha256=")?,
        None => headers.get("x-gitea-signature").or_else(|| headers.get("x-forgejo-signature"))?,
    };
    hex::decode(hex_digits.trim()).ok()
}

/// The push fields of a body whose signature held.
fn push(body: &[u8]) -> Result<Push, Refused> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(rename = "ref")]
        reference: String,
        after: String,
        #[serde(default)]
        deleted: bool,
    }
    let body: Body = serde_json::from_slice(body)
        .map_err(|e| Refused::NotAPush(format!("the body is not a push event: {e}")))?;
    let Some(branch) = body.reference.strip_prefix("refs/heads/") else {
        return Err(Refused::NotAPush(format!("{} is not a branch", body.reference)));
    };
    let commit = body.after.to_ascii_lowercase();
    let is_commit = matches!(commit.len(), 40 | 64)
        && commit.bytes().all(|b| b.is_ascii_hexdigit())
        && commit.bytes().any(|b| b != b'0');
    if body.deleted || !is_commit {
        return Err(Refused::NotAPush(format!("branch {branch} was deleted, or names no commit")));
    }
    if branch.is_empty() || branch.len() > 255 || branch.contains(['\0', '\n']) {
        return Err(Refused::NotAPush("the branch name is empty, too long or not a name".into()));
    }
    Ok(Push { branch: branch.to_string(), commit })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"the repository's webhook secret";
    const COMMIT: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";

    fn body(reference: &str, after: &str) -> Vec<u8> {
        serde_json::json!({
            "ref": reference,
            "before": "0000000000000000000000000000000000000000",
            "after": after,
            "repository": { "full_name": "owner/code", "ssh_url": "ssh://git@host/owner/code.git" },
            "commits": [],
        })
        .to_string()
        .into_bytes()
    }

    fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn a_github_push_signed_with_the_secret_is_taken() {
        let body = body("refs/heads/main", COMMIT);
        let signature = format!("sha256={}", hmac_hex(SECRET, &body));
        let headers = [("X-GitHub-Event", "push"), ("X-Hub-Signature-256", signature.as_str())];
        let push = check(&headers[..], &body, SECRET).unwrap();
        assert_eq!(push, Push { branch: "main".into(), commit: COMMIT.into() });
    }

    #[test]
    fn gitea_and_forgejo_sign_without_a_prefix() {
        let body = body("refs/heads/staging", COMMIT);
        let signature = hmac_hex(SECRET, &body);
        for (event, sig) in
            [("X-Gitea-Event", "X-Gitea-Signature"), ("X-Forgejo-Event", "X-Forgejo-Signature")]
        {
            let headers = [(event, "push"), (sig, signature.as_str())];
            assert_eq!(check(&headers[..], &body, SECRET).unwrap().branch, "staging");
        }
    }

    #[test]
    fn a_wrong_missing_or_malformed_signature_is_401() {
        let body = body("refs/heads/main", COMMIT);
        let other = format!("sha256={}", hmac_hex(b"another secret", &body));
        let tampered = {
            let mut b = body.clone();
            b[10] ^= 1;
            format!("sha256={}", hmac_hex(SECRET, &b))
        };
        let cases: [&[(&str, &str)]; 5] = [
            &[("X-GitHub-Event", "push")],
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &other)],
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &tampered)],
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", "sha256=zz")],
            // GitHub's header without its prefix.
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &other[7..])],
        ];
        for headers in cases {
            let refused = check(headers, &body, SECRET).unwrap_err();
            assert_eq!(refused.status(), 401, "{headers:?}: {refused}");
        }
    }

    #[test]
    fn an_oversized_body_is_413_before_anything_is_read() {
        let body = vec![b' '; MAX_BODY + 1];
        let headers = [("X-GitHub-Event", "push")];
        assert_eq!(check(&headers[..], &body, SECRET), Err(Refused::TooLarge(MAX_BODY + 1)));
        assert_eq!(Refused::TooLarge(0).status(), 413);
    }

    #[test]
    fn signed_events_that_are_not_a_branch_push_are_refused() {
        let cases = [
            ("ping", body("refs/heads/main", COMMIT)),
            ("push", body("refs/tags/v1", COMMIT)),
            ("push", body("refs/heads/main", "0000000000000000000000000000000000000000")),
            ("push", body("refs/heads/main", "not a commit")),
            ("push", b"{\"not\": \"a push\"}".to_vec()),
        ];
        for (event, body) in cases {
            let signature = format!("sha256={}", hmac_hex(SECRET, &body));
            let headers = [("X-GitHub-Event", event), ("X-Hub-Signature-256", signature.as_str())];
            let refused = check(&headers[..], &body, SECRET).unwrap_err();
            assert_eq!(refused.status(), 400, "{event}: {refused}");
        }
    }

    #[test]
    fn no_refusal_repeats_the_secret_or_the_signature() {
        let body = body("refs/heads/main", COMMIT);
        let signature = format!("sha256={}", hmac_hex(b"wrong", &body));
        let headers = [("X-GitHub-Event", "push"), ("X-Hub-Signature-256", signature.as_str())];
        let secret = b"s3cr3t-7f1c";
        let text = check(&headers[..], &body, secret).unwrap_err().to_string();
        assert_eq!(text, Refused::BadSignature.to_string());
        assert!(!text.contains(&signature[7..]) && !text.contains("s3cr3t"));
    }
}
