//! Small text helpers every room needs: what is shown to people must be
//! short and must not carry secrets. A leaf module: it imports nothing of
//! the crate.

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// `text` cut to at most `max_chars` characters, the cut marked with `…`.
pub fn clip(text: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => text.into(),
        Some((at, _)) => {
            let keep = text[..at]
                .char_indices()
                .nth(max_chars.saturating_sub(1))
                .map_or(at, |(i, _)| i);
            format!("{}…", &text[..keep]).into()
        }
    }
}

/// At most `max_lines` lines and about `max_chars` characters of `text`
/// (whole lines), the cut marked with `…`: evidence that fits a message.
pub fn trim_lines(text: &str, max_lines: usize, max_chars: usize) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i == max_lines || out.len() + line.len() > max_chars {
            out.push('…');
            return out;
        }
        if i > 0 {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

/// A JSON document as short lines, in the document's own key order: one
/// line per member of an object (`key: value`, the value compacted), one
/// per item of an array; a member holding an array of objects is listed
/// item by item under it (`items: 3 item(s)` then `  - {…}`). `raw` must
/// be valid JSON; `None` when it is not an object or an array.
pub fn json_lines(raw: &str) -> Option<Vec<String>> {
    let raw = raw.trim();
    let (open, close) = match raw.as_bytes().first()? {
        b'{' => ('{', '}'),
        b'[' => ('[', ']'),
        _ => return None,
    };
    let inner = raw.strip_prefix(open)?.strip_suffix(close)?;
    let mut out = Vec::new();
    for part in split_top(inner) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if open == '[' {
            out.push(compact(part));
            continue;
        }
        let Some((key, value)) = split_member(part) else {
            out.push(compact(part));
            continue;
        };
        let value = value.trim();
        let items: Vec<&str> = value
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .map(|v| {
                split_top(v)
                    .into_iter()
                    .filter(|i| !i.trim().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if items.iter().any(|i| i.trim_start().starts_with('{')) {
            out.push(format!("{key}: {} item(s)", items.len()));
            out.extend(items.iter().map(|i| format!("  - {}", compact(i.trim()))));
        } else {
            out.push(format!("{key}: {}", compact(value)));
        }
    }
    Some(out)
}

/// Splits `text` at commas outside strings, objects and arrays.
fn split_top(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start, mut in_string, mut escaped) = (0i32, 0usize, false, false);
    for (i, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `"key": value` → (`key` unquoted, `value`).
fn split_member(member: &str) -> Option<(String, &str)> {
    let member = member.trim_start();
    let rest = member.strip_prefix('"')?;
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                let key = &rest[..i];
                let value = rest[i + 1..].trim_start().strip_prefix(':')?;
                return Some((key.to_string(), value));
            }
            _ => {}
        }
    }
    None
}

/// JSON text without the whitespace outside its strings.
fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if !c.is_whitespace() {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_keep_the_documents_key_order_one_member_a_line() {
        let raw = r#"{ "status": "ok", "by_status": {"failed": 2, "accepted": 10},
            "items": [ {"id": 1, "note": "a, b"}, {"id": 2} ], "tags": ["x", "y"] }"#;
        assert_eq!(
            json_lines(raw).unwrap(),
            vec![
                r#"status: "ok""#,
                r#"by_status: {"failed":2,"accepted":10}"#,
                "items: 2 item(s)",
                r#"  - {"id":1,"note":"a, b"}"#,
                r#"  - {"id":2}"#,
                r#"tags: ["x","y"]"#,
            ]
        );
        assert_eq!(
            json_lines(r#"[1, {"k": "v \" ,"}]"#).unwrap(),
            vec!["1", r#"{"k":"v \" ,"}"#]
        );
        assert_eq!(json_lines("42"), None);
        assert_eq!(json_lines("{}").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text_on_a_character_boundary() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("障害対応手順", 3), "障害…");
        assert_eq!(clip("abc", 3), "abc");
    }

    #[test]
    fn a_url_loses_its_password_but_keeps_its_user() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite://firstline.db"), "sqlite://firstline.db");
    }
}
