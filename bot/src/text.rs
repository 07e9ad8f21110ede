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

#[cfg(test)]
mod tests {
    use super::*;

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
