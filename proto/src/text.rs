//! Text from the network, made safe to print.
//!
//! A node's region, a peer's agent string, a record's key or an error message from a peer comes
//! from whoever sent it. Printed raw, a control character in it can move the cursor, clear the
//! screen, set the window title or hide text (`\e]0;TITLE\a\e[2J`), and a bidirectional override
//! can make a line read differently from what it holds. Every CLI table and taucorder pass such
//! text through [`printable`] first.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as itself: a control character (C0, DEL, C1) or a
/// bidirectional formatting character.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control and bidirectional formatting character written as an escape
/// (`\x1b`, `\u{202e}`), and every backslash doubled when there is any such escape, so what is
/// printed can be read back unambiguously. Borrowed when there is nothing to escape.
pub fn printable(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// [`printable`], but line breaks stay line breaks: for error messages, which are built of
/// lines, any of which may quote a peer.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let escaped = |c: char| unsafe_char(c) && !(keep_newlines && c == '\n');
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if !escaped(c) => out.push(c),
            c if (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_obey_and_nothing_else() {
        let hostile = "eu\u{1b}]0;TITLE\u{7}\u{1b}[2J\r\n\u{9b}31m\u{7f}\u{202e}evil";
        let shown = printable(hostile);
        assert_eq!(shown, "eu\\x1b]0;TITLE\\x07\\x1b[2J\\x0d\\x0a\\x9b31m\\x7f\\u{202e}evil");
        assert!(!shown.chars().any(unsafe_char));
        // Plain text, accents and CJK included, is left as it is, and not copied.
        for plain in ["eu-west", "zürich", "東京", "a\\b"] {
            assert!(matches!(printable(plain), Cow::Borrowed(p) if p == plain), "{plain}");
        }
        // With an escape present, a literal backslash is doubled: "\x1b" typed by a sender
        // cannot pass for an escaped ESC.
        assert_eq!(printable("\\x1b\u{1b}"), "\\\\x1b\\x1b");
        // An error message keeps its lines, and nothing else.
        assert_eq!(printable_lines("a\nb\u{1b}[2J\r"), "a\nb\\x1b[2J\\x0d");
        assert!(matches!(printable_lines("a\nb"), Cow::Borrowed("a\nb")));
    }
}
