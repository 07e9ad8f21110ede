//! The error every webhook parser returns, and the small JSON-walking helpers
//! the three parsers share.
//!
//! The parsers deserialize a body into a `serde_json::Value` and walk it with
//! [`Obj`], whose accessors know the JSON path of the object they read from.
//! Every rejection therefore names the field at fault (`alerts[2].startsAt`,
//! `alerts[0].labels.severity`, `truncatedAlerts`, or `body` when the body is
//! not a JSON object at all), which is what the sender gets back in the 400.
//!
//! Conventions shared by all accessors:
//! - an absent key and an explicit `null` both count as "not set" for
//!   optional fields (Go senders marshal nil maps and slices as `null`);
//! - a required field that is absent is reported as `missing`, one that is
//!   `null` or of the wrong JSON type as `expected X, got Y`;
//! - messages are lower-case and carry no trailing period.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::domain::alert::AlertStatus;
use crate::domain::time::Millis;

/// A webhook body that cannot be accepted, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ParseError {
    /// JSON path of the offending field, like `alerts[2].startsAt`, or `body`
    /// when the body as a whole is unacceptable.
    pub field: String,
    /// What is wrong with it: lower-case, no trailing period.
    pub message: String,
}

impl ParseError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> ParseError {
        ParseError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The path of `key` inside the object at `parent` (`""`: the body):
/// `alerts[0].labels.severity`, or, for a key that is empty or holds a
/// character a dotted path cannot show, `labels["a.b"]` with the key as a
/// JSON string, so that every path names exactly one field.
pub fn join_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| {
            !c.is_control() && !c.is_whitespace() && !matches!(c, '.' | '[' | ']' | '"' | '\\')
        });
    match (plain, parent.is_empty()) {
        (true, true) => key.to_owned(),
        (true, false) => format!("{parent}.{key}"),
        (false, _) => format!(
            "{parent}[{}]",
            serde_json::to_string(key).unwrap_or_else(|_| "\"?\"".into())
        ),
    }
}

/// The fingerprint of an alert whose sender did not provide one: lower-case
/// hex of the first 8 bytes of SHA-256 over the labels sorted by name, each
/// written as `name=value\n` (16 hex digits, the same length as
/// Alertmanager's own fingerprints).
///
/// For example `{alertname="DiskFull", host="db-1"}` hashes the bytes
/// `"alertname=DiskFull\nhost=db-1\n"`. It depends on the labels only, so the
/// firing and the resolved delivery of one alert get the same fingerprint.
pub fn label_fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    // BTreeMap iterates in key order: the sort the rule asks for.
    for (name, value) in labels {
        hasher.update(name.as_bytes());
        hasher.update(b"=");
        hasher.update(value.as_bytes());
        hasher.update(b"\n");
    }
    let digest = hasher.finalize();
    hex::encode(&digest[..8])
}

/// Parses a webhook body, which must be a JSON object.
///
/// Invalid JSON is reported on `body` with serde_json's description, which
/// includes the line and column; valid JSON of another type is reported on
/// `body` as well, saying what was received.
pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ParseError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ParseError::new(
            "body",
            format!("expected a JSON object, got {}", kind(&other)),
        )),
        Err(e) => Err(ParseError::new("body", format!("not valid JSON: {e}"))),
    }
}

/// As [`parse_object`], but builds values only for the top-level fields in
/// `keep`; the others are read as far as JSON validity needs and dropped.
/// An Alertmanager body repeats its alerts' labels and annotations in
/// `groupLabels`, `commonLabels` and `commonAnnotations`, which firstline
/// does not use: building them was a third of the parsing time. A body that
/// fails here is parsed again by [`parse_object`], so errors read the same.
pub(crate) fn parse_object_keeping(
    body: &[u8],
    keep: &[&str],
) -> Result<Map<String, Value>, ParseError> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};

    struct Keeping<'k>(&'k [&'k str]);

    impl<'de> Visitor<'de> for Keeping<'_> {
        type Value = Map<String, Value>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Self::Value, A::Error> {
            let mut map = Map::new();
            while let Some(key) = fields.next_key::<String>()? {
                if self.0.contains(&key.as_str()) {
                    let value: Value = fields.next_value()?;
                    map.insert(key, value);
                } else {
                    fields.next_value::<IgnoredAny>()?;
                }
            }
            Ok(map)
        }
    }

    let mut de = serde_json::Deserializer::from_slice(body);
    match de
        .deserialize_map(Keeping(keep))
        .and_then(|map| de.end().map(|()| map))
    {
        Ok(map) => Ok(map),
        Err(e) => match parse_object(body) {
            Err(same_failure) => Err(same_failure),
            Ok(_) => Err(ParseError::new("body", format!("not valid JSON: {e}"))),
        },
    }
}

/// A JSON object together with its path in the body, for reading fields with
/// errors that name them.
#[derive(Debug, Clone)]
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    /// Path of this object; empty for the body itself.
    path: String,
}

impl<'a> Obj<'a> {
    /// The body's top-level object.
    pub(crate) fn root(map: &'a Map<String, Value>) -> Obj<'a> {
        Obj {
            map,
            path: String::new(),
        }
    }

    /// Whether `key` is present (even if `null`).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// The JSON path of `key` inside this object.
    pub(crate) fn path_of(&self, key: &str) -> String {
        join_path(&self.path, key)
    }

    /// An error about `key` of this object.
    pub(crate) fn error(&self, key: &str, message: impl Into<String>) -> ParseError {
        ParseError::new(self.path_of(key), message)
    }

    /// The value of a required key: absent is an error, `null` is passed on
    /// (and rejected by the type check that follows).
    fn required(&self, key: &str) -> Result<&'a Value, ParseError> {
        self.map.get(key).ok_or_else(|| self.error(key, "missing"))
    }

    /// The value of an optional key; absent and `null` are both `None`.
    fn optional(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A required string.
    pub(crate) fn req_str(&self, key: &str) -> Result<&'a str, ParseError> {
        let value = self.required(key)?;
        expect_str(value, || self.path_of(key))
    }

    /// An optional string.
    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ParseError> {
        self.optional(key)
            .map(|v| expect_str(v, || self.path_of(key)))
            .transpose()
    }

    /// An optional string where `""` also means "not set" (Go senders write
    /// empty strings for unset URLs and keys).
    pub(crate) fn opt_non_empty_str(&self, key: &str) -> Result<Option<&'a str>, ParseError> {
        Ok(self.opt_str(key)?.filter(|s| !s.is_empty()))
    }

    /// An optional non-negative integer.
    pub(crate) fn opt_u64(&self, key: &str) -> Result<Option<u64>, ParseError> {
        let Some(value) = self.optional(key) else {
            return Ok(None);
        };
        match value {
            Value::Number(n) => n.as_u64().map(Some).ok_or_else(|| {
                self.error(key, format!("expected a non-negative integer, got {n}"))
            }),
            other => Err(self.error(
                key,
                format!("expected a non-negative integer, got {}", kind(other)),
            )),
        }
    }

    /// A required, non-empty array of objects, each with its own path
    /// (`alerts[0]`, `alerts[1]`, ...).
    pub(crate) fn req_objects(&self, key: &str) -> Result<Vec<Obj<'a>>, ParseError> {
        let path = self.path_of(key);
        let items = match self.required(key)? {
            Value::Array(items) => items,
            other => {
                return Err(ParseError::new(
                    path,
                    format!("expected an array, got {}", kind(other)),
                ));
            }
        };
        if items.is_empty() {
            return Err(ParseError::new(path, "must not be an empty array"));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let item_path = format!("{path}[{i}]");
                match item {
                    Value::Object(map) => Ok(Obj {
                        map,
                        path: item_path,
                    }),
                    other => Err(ParseError::new(
                        item_path,
                        format!("expected an object, got {}", kind(other)),
                    )),
                }
            })
            .collect()
    }

    /// A required object of string values (labels).
    pub(crate) fn req_string_map(&self, key: &str) -> Result<BTreeMap<String, String>, ParseError> {
        let value = self.required(key)?;
        self.string_map(key, value)
    }

    /// An optional object of string values (annotations); absent is empty.
    pub(crate) fn opt_string_map(&self, key: &str) -> Result<BTreeMap<String, String>, ParseError> {
        match self.optional(key) {
            Some(value) => self.string_map(key, value),
            None => Ok(BTreeMap::new()),
        }
    }

    fn string_map(&self, key: &str, value: &Value) -> Result<BTreeMap<String, String>, ParseError> {
        let path = self.path_of(key);
        let Value::Object(map) = value else {
            return Err(ParseError::new(
                path,
                format!("expected an object of strings, got {}", kind(value)),
            ));
        };
        map.iter()
            .map(|(name, v)| {
                let s = expect_str(v, || format!("{path}.{name}"))?;
                Ok((name.clone(), s.to_owned()))
            })
            .collect()
    }

    /// A required `firing` or `resolved`.
    pub(crate) fn req_status(&self, key: &str) -> Result<AlertStatus, ParseError> {
        let s = self.req_str(key)?;
        self.status(key, s)
    }

    /// An optional `firing` or `resolved`.
    pub(crate) fn opt_status(&self, key: &str) -> Result<Option<AlertStatus>, ParseError> {
        self.opt_str(key)?.map(|s| self.status(key, s)).transpose()
    }

    fn status(&self, key: &str, s: &str) -> Result<AlertStatus, ParseError> {
        AlertStatus::parse(s).ok_or_else(|| {
            self.error(
                key,
                format!("expected \"firing\" or \"resolved\", got {}", quoted(s)),
            )
        })
    }

    /// A required RFC 3339 time; Go's zero time (and anything up to the Unix
    /// epoch) is accepted and read as `None`.
    pub(crate) fn req_time(&self, key: &str) -> Result<Option<Millis>, ParseError> {
        let s = self.req_str(key)?;
        self.time(key, s)
    }

    /// An optional RFC 3339 time; absent, `null` and Go's zero time are `None`.
    pub(crate) fn opt_time(&self, key: &str) -> Result<Option<Millis>, ParseError> {
        match self.opt_str(key)? {
            Some(s) => self.time(key, s),
            None => Ok(None),
        }
    }

    fn time(&self, key: &str, s: &str) -> Result<Option<Millis>, ParseError> {
        Millis::parse_rfc3339(s).map_err(|e| {
            self.error(
                key,
                format!("expected an RFC 3339 time, got {} ({e})", quoted(s)),
            )
        })
    }

    /// Rejects the first key (in sorted order) that is not in `allowed`.
    pub(crate) fn deny_unknown(&self, allowed: &[&str]) -> Result<(), ParseError> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(unknown) => Err(self.error(
                unknown,
                format!(
                    "unknown field {}; expected one of {}",
                    quoted(unknown),
                    allowed.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }
}

fn expect_str(value: &Value, path: impl FnOnce() -> String) -> Result<&str, ParseError> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(ParseError::new(
            path(),
            format!("expected a string, got {}", kind(other)),
        )),
    }
}

/// "a string", "an array", ...: the JSON type of `value`, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `s` quoted and escaped for a message, cut short if a sender put a novel
/// into a field.
fn quoted(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    if s.chars().count() <= MAX_CHARS {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX_CHARS).collect();
        format!("{head:?}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn label_fingerprint_hashes_sorted_name_value_lines() {
        let fp = label_fingerprint(&labels(&[("host", "db-1"), ("alertname", "DiskFull")]));
        let digest = Sha256::digest(b"alertname=DiskFull\nhost=db-1\n");
        assert_eq!(fp, hex::encode(&digest[..8]));
        assert_eq!(fp.len(), 16);
    }

    #[test]
    fn label_fingerprint_ignores_insertion_order_but_not_values() {
        let a = label_fingerprint(&labels(&[("a", "1"), ("b", "2")]));
        let b = label_fingerprint(&labels(&[("b", "2"), ("a", "1")]));
        let c = label_fingerprint(&labels(&[("a", "1"), ("b", "3")]));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn error_displays_as_field_colon_message() {
        let e = ParseError::new("alerts[2].startsAt", "missing");
        assert_eq!(e.to_string(), "alerts[2].startsAt: missing");
    }

    #[test]
    fn invalid_json_is_reported_on_body_with_line_and_column() {
        let e = parse_object(b"{\n  \"a\": ,\n}").unwrap_err();
        assert_eq!(e.field, "body");
        assert!(e.message.starts_with("not valid JSON"), "{}", e.message);
        assert!(e.message.contains("line 2 column"), "{}", e.message);
    }

    #[test]
    fn empty_body_is_not_valid_json() {
        let e = parse_object(b"").unwrap_err();
        assert_eq!(e.field, "body");
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
    }

    #[test]
    fn scalar_body_is_reported_as_not_an_object() {
        let e = parse_object(b"42").unwrap_err();
        assert_eq!(e.field, "body");
        assert_eq!(e.message, "expected a JSON object, got a number");
    }

    #[test]
    fn null_counts_as_absent_for_optional_fields_but_not_for_required_ones() {
        let map = parse_object(br#"{"a": null}"#).unwrap();
        let obj = Obj::root(&map);
        assert_eq!(obj.opt_str("a"), Ok(None));
        assert!(obj.opt_string_map("a").unwrap().is_empty());
        let e = obj.req_str("a").unwrap_err();
        assert_eq!(e.message, "expected a string, got null");
        assert_eq!(obj.req_str("b").unwrap_err().message, "missing");
    }

    #[test]
    fn very_long_values_are_cut_short_in_messages() {
        let long = "x".repeat(10_000);
        let body = serde_json::to_vec(&serde_json::json!({ "status": long })).unwrap();
        let map = parse_object(&body).unwrap();
        let e = Obj::root(&map).req_status("status").unwrap_err();
        assert!(e.message.len() < 200, "{}", e.message);
        assert!(e.message.ends_with("..."), "{}", e.message);
    }

    #[test]
    fn keeping_some_fields_reads_them_as_a_full_parse_does_and_fails_alike() {
        let body = br#"{"a": {"x": [1, "2"]}, "b": "skip \" me", "c": null, "d": [{"e": 1}]}"#;
        let full = parse_object(body).unwrap();
        let kept = parse_object_keeping(body, &["a", "c", "d"]).unwrap();
        assert_eq!(kept.len(), 3);
        for k in ["a", "c", "d"] {
            assert_eq!(kept.get(k), full.get(k), "{k}");
        }
        for bad in [
            &b"42"[..],
            b"",
            b"{\n \"a\": ,\n}",
            b"{\"b\": [} ",
            b"{} {}",
        ] {
            assert_eq!(
                parse_object_keeping(bad, &["a"]).unwrap_err(),
                parse_object(bad).unwrap_err()
            );
        }
        // Deep nesting: an error in a kept field, skipped (without recursion)
        // in another.
        let deep = format!("{{\"b\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            parse_object_keeping(deep.as_bytes(), &["b"])
                .unwrap_err()
                .field,
            "body"
        );
        assert!(
            parse_object_keeping(deep.as_bytes(), &["a"])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_crash() {
        let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = parse_object(body.as_bytes()).unwrap_err();
        assert_eq!(e.field, "body");
    }
}
