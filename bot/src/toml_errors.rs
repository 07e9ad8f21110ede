//! Every structural problem of a TOML file, not only the first: what
//! `check-config` and `runbook lint` report. serde stops at the first
//! error; after each one its line (or its whole section, for a section
//! header) is blanked and the text parsed again, line numbers unchanged.

use serde::de::DeserializeOwned;

/// One problem, as serde described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// 1-based line in the original text, where serde gave a position.
    pub line: Option<usize>,
    /// The message, without its trailing period.
    pub message: String,
    /// For an unknown field, the field's name (`max_body_byts`).
    pub unknown_field: Option<String>,
}

/// The structural problems of `text` read as a `T`, in the order found,
/// and the text left once it reads (its faulty lines blanked), if it does.
/// Broken TOML (a syntax error) ends the search: nothing after it can be
/// read reliably. A syntax error caused by blanking a line (inside a
/// multi-line value) is not reported; the search just stops there.
pub fn structural<T: DeserializeOwned>(text: &str) -> (Vec<Found>, Option<String>) {
    let mut found: Vec<Found> = Vec::new();
    let mut text = text.to_string();
    // Each round blanks at least one line, so this ends.
    for _ in 0..=text.lines().count() {
        let e = match toml::from_str::<T>(&text) {
            Ok(_) => {
                found.sort_by_key(|f| f.line.unwrap_or(usize::MAX));
                return (found, Some(text));
            }
            Err(e) => e,
        };
        let syntax = toml::from_str::<toml::Table>(&text).is_err();
        if syntax && !found.is_empty() {
            break;
        }
        let line = e.span().map(|s| line_of(&text, s.start));
        let message = e.message().trim_end_matches('.').to_string();
        let unknown_field = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string);
        // A missing field at the top has no line of its own to blank
        // (serde points at the whole document): it is the last one found.
        let at_header = line.is_some_and(|l| header_at_line(&text, l).is_some());
        let last = syntax || (message.starts_with("missing field") && !at_header);
        found.push(Found {
            line,
            message,
            unknown_field,
        });
        let blanked = match line {
            Some(l) if !last => blank(&text, l),
            _ => break,
        };
        if blanked == text {
            break;
        }
        text = blanked;
    }
    found.sort_by_key(|f| f.line.unwrap_or(usize::MAX));
    (found, None)
}

/// The 1-based line of byte `offset`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// The table named by a header on `line` (1-based): `server` for
/// `[server]`, `checks` for `[[checks]]`.
pub fn header_at_line(text: &str, line: usize) -> Option<String> {
    let t = without_comment(text.lines().nth(line.checked_sub(1)?)?).trim();
    t.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .map(|h| h.trim_matches(['[', ']']).trim().to_string())
}

/// The 1-based line of the value at dotted `key` in `text`, where an
/// array element is written `name[i]` (0-based): `escalation.P1.steps[1].page`
/// finds the `page` of the second inline step, however the file spreads
/// it over lines. When the whole key is not there, the line of its longest
/// part that is (the step, the policy); `None` for text that is not TOML.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut segments = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        segments.push(Segment::Key(name));
        while let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']')?;
            segments.push(Segment::Index(inner[..end].parse().ok()?));
            rest = &inner[end + 1..];
        }
    }
    let mut found = None;
    let mut table = Some(doc.get_ref());
    let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
    for segment in segments {
        let next = match (segment, table, value.map(|v| v.get_ref())) {
            (Segment::Key(k), Some(t), _) => t.get(k),
            (Segment::Key(k), None, Some(DeValue::Table(t))) => t.get(k),
            (Segment::Index(i), None, Some(DeValue::Array(a))) => a.get(i),
            _ => None,
        };
        let Some(next) = next else { break };
        found = Some(line_of(text, next.span().start));
        table = None;
        value = Some(next);
    }
    found
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `line` without a trailing `# comment` (a `#` inside quotes is kept).
pub fn without_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// `text` with `line` (1-based) emptied; a section header takes its
/// section's lines with it.
fn blank(text: &str, line: usize) -> String {
    let header = header_at_line(text, line).is_some();
    let mut out = String::with_capacity(text.len());
    let mut in_section = false;
    for (i, l) in text.lines().enumerate() {
        let n = i + 1;
        if n == line {
            in_section = header;
        } else if in_section && l.trim_start().starts_with('[') {
            in_section = false;
        }
        if n != line && !in_section {
            out.push_str(l);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Two {
        a: Option<u32>,
        b: Option<String>,
        #[serde(default)]
        more: Vec<More>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct More {
        c: Option<u32>,
    }

    #[test]
    fn every_problem_is_found_with_its_line_and_the_rest_still_reads() {
        let text = "a = \"one\"\nbee = 2\nb = \"ok\"\n[[more]]\nc = \"x\"\n[[more]]\nd = 1\n";

        let (found, rest) = structural::<Two>(text);

        let lines: Vec<_> = found.iter().map(|f| f.line).collect();
        assert_eq!(lines, [Some(1), Some(2), Some(5), Some(7)], "{found:?}");
        assert_eq!(found[1].unknown_field.as_deref(), Some("bee"));
        assert!(rest.is_some());
    }

    #[test]
    fn a_key_inside_inline_tables_and_arrays_is_found_on_its_line() {
        let text = "[escalation.P1]\nsteps = [\n  { page = [\"a\"], ack_within = \"5m\" },\n  { page = [\"b\"],\n    ack_within = \"x\" },\n]\n";

        assert_eq!(
            line_of_key(text, "escalation.P1.steps[1].ack_within"),
            Some(5)
        );
        assert_eq!(line_of_key(text, "escalation.P1.steps[0].page"), Some(3));
        assert_eq!(line_of_key(text, "escalation.P1.steps[1].nothing"), Some(4));
        assert_eq!(line_of_key(text, "escalation.P1"), Some(1));
        assert_eq!(line_of_key(text, "server.listen"), None);
    }

    #[test]
    fn a_header_with_a_comment_is_still_a_header() {
        let text = "a = 1\n[contacts.\"x#y\"]   # the DBA [on call]\n";

        assert_eq!(header_at_line(text, 2).as_deref(), Some("contacts.\"x#y\""));
        assert_eq!(header_at_line(text, 1), None);
    }

    #[test]
    fn broken_toml_is_one_problem_and_nothing_after_it() {
        let (found, rest) = structural::<Two>("a = \nbee = 2\n");

        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].line, Some(1));
        assert!(rest.is_none());
    }
}
