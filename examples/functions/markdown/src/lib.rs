//! An example function: renders the Markdown in the request body (CommonMark with tables,
//! footnotes and strikethrough) as an HTML fragment.

use pulldown_cmark::{Options, Parser, html};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Markdown;

wasi::http::proxy::export!(Markdown);

impl wasi::exports::http::incoming_handler::Guest for Markdown {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let body = kit::read_body(&request);
        let text = String::from_utf8_lossy(&body);
        let options = Options::ENABLE_TABLES
            | Options::ENABLE_FOOTNOTES
            | Options::ENABLE_STRIKETHROUGH
            | Options::ENABLE_TASKLISTS;
        let mut page = String::with_capacity(text.len() * 3 / 2);
        html::push_html(&mut page, Parser::new_ext(&text, options));
        kit::respond(out, 200, &[("content-type", b"text/html; charset=utf-8")], page.as_bytes());
    }
}
