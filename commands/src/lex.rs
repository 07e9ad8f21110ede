//! Splitting a chat message into words, and the cursor each command's parse
//! step walks over them with.
//!
//! Words are separated by whitespace; double quotes group words into one
//! (`"db is down"`), so text can start with something that would otherwise
//! look like an incident ID or an option. Chat clients on phones and macOS
//! turn `"` into `“` and `”` and `--` into `—`, so those are accepted too.
//! A backslash before a quote makes it literal.

use crate::error::ParseError;
use crate::help::lookup;
use crate::value::{IncidentRef, ValueError, looks_like_incident_id};

/// One word of the input, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    /// The word with its quotes removed.
    pub(crate) text: String,
    /// Whether any part was quoted: a quoted word is always plain text, never
    /// an ID or an option.
    pub(crate) quoted: bool,
    /// Position among all words, to tell whether two words were neighbours.
    index: usize,
    /// Byte range in the input, so free text keeps the user's own spacing and
    /// line breaks between neighbouring words.
    start: usize,
    end: usize,
}

/// The input had an opening quote and no closing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unclosed;

fn is_quote(c: char) -> bool {
    matches!(c, '"' | '\u{201C}' | '\u{201D}')
}

/// Splits `input` into words; see the module doc for the rules.
pub(crate) fn tokenize(input: &str) -> Result<Vec<Token>, Unclosed> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    loop {
        while chars.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            return Ok(tokens);
        };
        let mut text = String::new();
        let mut quoted = false;
        let mut in_quote = false;
        while let Some(&(_, c)) = chars.peek() {
            if !in_quote && c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '\\' && chars.peek().is_some_and(|&(_, next)| is_quote(next)) {
                if let Some((_, next)) = chars.next() {
                    text.push(next);
                }
            } else if is_quote(c) {
                in_quote = !in_quote;
                quoted = true;
            } else {
                text.push(c);
            }
        }
        if in_quote {
            return Err(Unclosed);
        }
        let end = chars.peek().map_or(input.len(), |&(i, _)| i);
        tokens.push(Token {
            text,
            quoted,
            index: tokens.len(),
            start,
            end,
        });
    }
}

/// Joins words back into text, keeping the original spacing between words
/// that were neighbours in the input.
fn join(input: &str, tokens: &[Token]) -> String {
    let mut out = String::new();
    for (i, token) in tokens.iter().enumerate() {
        if let Some(prev) = i.checked_sub(1).map(|p| &tokens[p]) {
            if token.index == prev.index + 1 {
                out.push_str(&input[prev.end..token.start]);
            } else {
                out.push(' ');
            }
        }
        out.push_str(&token.text);
    }
    out.trim().to_string()
}

/// An option a command takes, such as `--sev P1`.
pub(crate) struct Flag {
    /// The name without dashes, as shown in usage lines.
    pub(crate) name: &'static str,
    /// Other names accepted for it, without dashes.
    pub(crate) aliases: &'static [&'static str],
    /// A sample value for the "needs a value" message.
    pub(crate) example: &'static str,
}

/// If `token` is written as an option (`--name`, `--name=value`, or with a
/// dash a chat client substituted), its lower-case name and inline value.
fn as_flag(token: &Token) -> Option<(String, Option<String>)> {
    if token.quoted {
        return None;
    }
    let rest = ["--", "\u{2014}", "\u{2013}"]
        .iter()
        .find_map(|dash| token.text.strip_prefix(dash))?;
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    Some(match rest.split_once('=') {
        Some((name, value)) => (name.to_ascii_lowercase(), Some(value.to_string())),
        None => (rest.to_ascii_lowercase(), None),
    })
}

/// The words after a command, consumed front to back by its parse step.
///
/// It carries the command's name and usage line so every error it raises
/// names both without each parse step repeating them.
pub(crate) struct Args<'a> {
    input: &'a str,
    rest: Vec<Token>,
    command: &'static str,
    usage: &'static str,
}

impl<'a> Args<'a> {
    /// Arguments for `command`, which must be a name in the help table.
    pub(crate) fn new(input: &'a str, rest: Vec<Token>, command: &str) -> Self {
        let (command, usage) = lookup(command).unwrap_or(("help", "/help [command]"));
        Args {
            input,
            rest,
            command,
            usage,
        }
    }

    /// An error for this command with its usage line attached.
    pub(crate) fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            command: self.command.to_string(),
            message: message.into(),
            usage: self.usage,
        }
    }

    fn value_error(&self, err: ValueError) -> ParseError {
        self.error(err.message)
    }

    /// The next word, without consuming it.
    pub(crate) fn peek(&self) -> Option<&Token> {
        self.rest.first()
    }

    /// Consumes the next word, if any.
    pub(crate) fn next(&mut self) -> Option<Token> {
        (!self.rest.is_empty()).then(|| self.rest.remove(0))
    }

    /// Consumes the next word or says what is missing.
    pub(crate) fn required(&mut self, missing: &str) -> Result<Token, ParseError> {
        self.next().ok_or_else(|| self.error(missing))
    }

    /// Parses the next word with `FromStr`, if there is one.
    pub(crate) fn optional_value<T>(&mut self) -> Result<Option<T>, ParseError>
    where
        T: std::str::FromStr<Err = ValueError>,
    {
        self.next()
            .map(|token| token.text.parse().map_err(|e| self.value_error(e)))
            .transpose()
    }

    /// Parses `text` with `FromStr`, turning a refusal into this command's
    /// error.
    pub(crate) fn value<T>(&self, text: &str) -> Result<T, ParseError>
    where
        T: std::str::FromStr<Err = ValueError>,
    {
        text.parse().map_err(|e| self.value_error(e))
    }

    /// Consumes the next word if it is written like an incident ID.
    ///
    /// For `[ID]` followed by more arguments: a word that is not ID-shaped is
    /// left for them; one that is ID-shaped but malformed is refused rather
    /// than taken as text. Quoted words are never IDs.
    pub(crate) fn optional_id(&mut self) -> Result<Option<IncidentRef>, ParseError> {
        match self.peek() {
            Some(token) if !token.quoted && looks_like_incident_id(&token.text) => {
                let id = self.value(&token.text)?;
                self.next();
                Ok(Some(id))
            }
            _ => Ok(None),
        }
    }

    /// For commands whose only argument is `[ID]`: whatever word is there
    /// must be an incident ID, and nothing may follow it.
    pub(crate) fn only_id(&mut self) -> Result<Option<IncidentRef>, ParseError> {
        let id = self.optional_value()?;
        self.finish()?;
        Ok(id)
    }

    /// Consumes all remaining words as free text; `None` if there are none.
    pub(crate) fn text(&mut self) -> Option<String> {
        let text = join(self.input, &self.rest);
        self.rest.clear();
        (!text.is_empty()).then_some(text)
    }

    /// Refuses leftover words, for commands that take no more.
    pub(crate) fn finish(&mut self) -> Result<(), ParseError> {
        match self.rest.len() {
            0 => Ok(()),
            1 => Err(self.error(format!("unexpected extra argument {:?}", self.rest[0].text))),
            _ => Err(self.error(format!(
                "unexpected extra arguments {:?}",
                join(self.input, &self.rest)
            ))),
        }
    }

    /// Removes the options in `flags` from wherever they are among the
    /// remaining words and returns their values in the same order.
    ///
    /// Only called by commands that take options, so there an unknown
    /// `--word` is a typo worth reporting; elsewhere `--word` is plain text.
    pub(crate) fn flags<const N: usize>(
        &mut self,
        flags: [&Flag; N],
    ) -> Result<[Option<String>; N], ParseError> {
        let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
        let mut i = 0;
        while i < self.rest.len() {
            let Some((name, inline)) = as_flag(&self.rest[i]) else {
                i += 1;
                continue;
            };
            let Some(slot) = flags
                .iter()
                .position(|f| f.name == name || f.aliases.contains(&name.as_str()))
            else {
                let known: Vec<String> = flags.iter().map(|f| format!("--{}", f.name)).collect();
                return Err(self.error(format!(
                    "unknown option {:?}; this command takes {} (put text that starts with -- in quotes)",
                    self.rest[i].text,
                    known.join(" and ")
                )));
            };
            let flag = flags[slot];
            self.rest.remove(i);
            let value = match inline {
                Some(value) => Some(value),
                None if self.rest.get(i).is_some_and(|t| as_flag(t).is_none()) => {
                    Some(self.rest.remove(i).text)
                }
                None => None,
            };
            let value = value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                self.error(format!(
                    "--{} needs a value, e.g. --{} {}",
                    flag.name, flag.name, flag.example
                ))
            })?;
            if values[slot].is_some() {
                return Err(self.error(format!("--{} is given twice; give it once", flag.name)));
            }
            values[slot] = Some(value);
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(input: &str) -> Vec<String> {
        tokenize(input)
            .unwrap()
            .into_iter()
            .map(|t| t.text)
            .collect()
    }

    #[test]
    fn words_are_split_on_any_whitespace() {
        assert_eq!(words("  a\tb\n c  "), ["a", "b", "c"]);
    }

    #[test]
    fn quotes_group_words_and_are_removed() {
        assert_eq!(
            words(r#"note "db is down" now"#),
            ["note", "db is down", "now"]
        );
        assert_eq!(words(r#"--owner="Ann Lee""#), ["--owner=Ann Lee"]);
        assert_eq!(words(r#""""#), [""]);
    }

    #[test]
    fn typographic_quotes_from_chat_clients_work_like_plain_ones() {
        assert_eq!(
            words("note \u{201C}db is down\u{201D}"),
            ["note", "db is down"]
        );
    }

    #[test]
    fn apostrophes_are_ordinary_letters() {
        assert_eq!(words("can't reach db"), ["can't", "reach", "db"]);
    }

    #[test]
    fn a_backslash_makes_a_quote_literal() {
        assert_eq!(words(r#"say \"hi\""#), ["say", "\"hi\""]);
        assert_eq!(words(r#""a \" b""#), ["a \" b"]);
        assert_eq!(words(r"C:\temp"), [r"C:\temp"]);
    }

    #[test]
    fn an_unclosed_quote_is_refused() {
        assert_eq!(tokenize(r#"note "db is down"#), Err(Unclosed));
        assert_eq!(tokenize(r#"a "b" "c"#), Err(Unclosed));
    }

    #[test]
    fn free_text_keeps_the_spacing_and_line_breaks_it_was_typed_with() {
        let input = "x first  line\nsecond \"quoted  part\"";
        let tokens = tokenize(input).unwrap();
        assert_eq!(
            join(input, &tokens[1..]),
            "first  line\nsecond quoted  part"
        );
    }
}
