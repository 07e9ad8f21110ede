//! The webhook parsers: arbitrary bytes, near-JSON, and the fixtures of
//! `tests/fixtures/` mutated (see the crate doc for the properties).

use firstline::domain::alert::{AlertStatus, ParsedWebhook, Source};
use firstline::intake::{self, ParseError};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};

use crate::{Bytes, fuzz};

const AM_FIRING: &str = include_str!("../fixtures/alertmanager_firing.json");
const AM_RESOLVED: &str = include_str!("../fixtures/alertmanager_resolved.json");
const AM_TRUNCATED: &str = include_str!("../fixtures/alertmanager_truncated.json");
const GRAFANA_FIRING: &str = include_str!("../fixtures/grafana_firing.json");
const GRAFANA_RESOLVED: &str = include_str!("../fixtures/grafana_resolved.json");
const GENERIC_SINGLE: &str = include_str!("../fixtures/generic_single.json");
const GENERIC_MANY: &str = include_str!("../fixtures/generic_many.json");

/// Every fixture: a source is fed its own most of the time and the others'
/// sometimes (a misconfigured sender).
const FIXTURES: [&str; 7] = [
    AM_FIRING,
    AM_RESOLVED,
    AM_TRUNCATED,
    GRAFANA_FIRING,
    GRAFANA_RESOLVED,
    GENERIC_SINGLE,
    GENERIC_MANY,
];

fn own_fixtures(source: Source) -> &'static [usize] {
    match source {
        Source::Alertmanager => &[0, 1, 2],
        Source::Grafana => &[3, 4],
        Source::Generic => &[5, 6],
    }
}

/// Field names of all three shapes: keys worth inserting, and the names a
/// refusal may give for a field that is missing.
const FIELD_NAMES: &[&str] = &[
    "version",
    "groupKey",
    "truncatedAlerts",
    "receiver",
    "alerts",
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
    "title",
    "severity",
    "description",
    "starts_at",
    "ends_at",
    "source_url",
    "alertname",
    "groupLabels",
    "commonLabels",
];

/// The top-level fields the Alertmanager and Grafana parsers read (their
/// `GROUPED_FIELDS`); a refusal of a body that a `serde_json::Value`
/// cannot hold must start with one of them.
const GROUPED_FIELDS: &[&str] = &[
    "version",
    "groupKey",
    "truncatedAlerts",
    "receiver",
    "alerts",
];

// ----------------------------------------------------------------------
// Targets

#[test]
fn no_alertmanager_body_panics_or_accepts_text_that_cannot_be_stored() {
    fuzz_source("alertmanager", Source::Alertmanager, 10_000);
}

#[test]
fn no_grafana_body_panics_or_accepts_text_that_cannot_be_stored() {
    fuzz_source("grafana", Source::Grafana, 10_000);
}

#[test]
fn no_generic_body_panics_or_accepts_text_that_cannot_be_stored() {
    fuzz_source("generic", Source::Generic, 10_000);
}

fn fuzz_source(name: &str, source: Source, default_cases: u32) {
    fuzz(name, default_cases, body(source), |Bytes(body)| {
        check(source, &body)
    });
}

/// The properties of one parse; `Ok` names the outcome.
fn check(source: Source, body: &[u8]) -> Result<&'static str, String> {
    match intake::parse(source, body) {
        Ok(parsed) => check_accepted(source, &parsed).map(|()| "accepted"),
        Err(e) => check_refusal(&e, body).map(|()| {
            if e.field == "body" {
                "refused on body"
            } else {
                "refused on a field"
            }
        }),
    }
}

fn check_accepted(source: Source, parsed: &ParsedWebhook) -> Result<(), String> {
    if parsed.alerts.is_empty() {
        return Err("accepted a webhook without alerts".into());
    }
    for (i, alert) in parsed.alerts.iter().enumerate() {
        if alert.source != source {
            return Err(format!("alerts[{i}] has source {:?}", alert.source));
        }
        if alert.fingerprint.is_empty() {
            return Err(format!("alerts[{i}] has an empty fingerprint"));
        }
        if alert.status == AlertStatus::Firing && alert.ends_at.is_some() {
            return Err(format!("alerts[{i}] is firing with an end time"));
        }
    }
    let value = serde_json::to_value(parsed).map_err(|e| format!("not serialisable: {e}"))?;
    match nul_at(&value, String::new()) {
        Some(path) => Err(format!(
            "accepted a NUL character at {path}, which PostgreSQL cannot store: {value}"
        )),
        None => Ok(()),
    }
}

/// The path of the first string (value or key) with a NUL in it.
fn nul_at(v: &Value, at: String) -> Option<String> {
    match v {
        Value::String(s) if s.contains('\0') => Some(at),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_at(item, format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let at = format!("{at}.{k}");
            if k.contains('\0') {
                Some(format!("{at} (a key)"))
            } else {
                nul_at(item, at)
            }
        }),
        _ => None,
    }
}

fn check_refusal(e: &ParseError, body: &[u8]) -> Result<(), String> {
    if e.field.is_empty() {
        return Err(format!("refused with an empty field: {e:?}"));
    }
    if e.message.trim().is_empty() {
        return Err(format!("refused with an empty message: {e:?}"));
    }
    if e.field == "body" {
        return Ok(());
    }
    let names_a_path = match serde_json::from_slice::<Value>(body) {
        Ok(value) => resolves(&e.field, &value),
        // A body a Value cannot hold, refused on a field its parser reads.
        Err(_) => GROUPED_FIELDS.iter().any(|f| {
            e.field
                .strip_prefix(f)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        }),
    };
    if names_a_path {
        Ok(())
    } else {
        Err(format!(
            "refusal names {:?}, not a path into the body: {e:?}",
            e.field
        ))
    }
}

/// Whether `path` (`alerts[1].labels.severity`) leads somewhere in `v`: to a
/// value, to a key (`x (its name)`, for a key with a NUL in it), or to a
/// missing field of the shape. Keys may hold dots, so every key that fits
/// is tried.
fn resolves(path: &str, v: &Value) -> bool {
    if path.is_empty() {
        return true;
    }
    match v {
        // `["a.b"]`: a key written as a JSON string (empty, or holding a
        // character a dotted path cannot show).
        Value::Object(map) if path.starts_with("[\"") => {
            let mut keys = serde_json::Deserializer::from_str(&path[1..]).into_iter::<String>();
            let Some(Ok(key)) = keys.next() else {
                return false;
            };
            let Some(rest) = path[1 + keys.byte_offset()..].strip_prefix(']') else {
                return false;
            };
            let Some(item) = map.get(&key) else {
                return false;
            };
            rest.is_empty()
                || rest == " (its name)"
                || rest
                    .strip_prefix('.')
                    .is_some_and(|r| resolves_inside(r, item))
                || (rest.starts_with('[') && resolves(rest, item))
        }
        Value::Object(map) => {
            let through_a_key = map.iter().any(|(k, item)| {
                let shown = k.replace('\0', "\\u0000");
                path.strip_prefix(shown.as_str()).is_some_and(|rest| {
                    rest.is_empty()
                        || rest == " (its name)"
                        || rest
                            .strip_prefix('.')
                            .is_some_and(|r| resolves_inside(r, item))
                        || (rest.starts_with('[') && resolves(rest, item))
                })
            });
            through_a_key || FIELD_NAMES.contains(&path)
        }
        Value::Array(items) => {
            let Some((index, rest)) = path
                .strip_prefix('[')
                .and_then(|p| p.split_once(']'))
                .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest)))
            else {
                return false;
            };
            let Some(item) = items.get(index) else {
                return false;
            };
            rest.is_empty()
                || (rest.starts_with('[') && resolves(rest, item))
                || rest
                    .strip_prefix('.')
                    .is_some_and(|r| resolves_inside(r, item))
        }
        _ => false,
    }
}

/// After a dot: a key of an object, which may be the empty key.
fn resolves_inside(path: &str, v: &Value) -> bool {
    match v {
        Value::Object(map) if path.is_empty() => map.contains_key(""),
        _ => resolves(path, v),
    }
}

// ----------------------------------------------------------------------
// Inputs

/// A body for `source`: mostly a mutated fixture, else bytes or near-JSON.
fn body(source: Source) -> impl Strategy<Value = Bytes> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..512).prop_map(Bytes),
        1 => token_soup().prop_map(Bytes),
        1 => random_object().prop_map(|v| Bytes(serialise(&v, false))),
        7 => mutant(source).prop_map(|m| Bytes(m.apply())),
    ]
}

/// JSON-ish tokens in any order: mostly invalid, sometimes not.
fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "\\u0000",
        "\"\\u0000\"",
        "1e400",
        "-0",
        "null",
        "true",
        "\"version\"",
        "\"4\"",
        "\"1\"",
        "\"alerts\"",
        "\"status\"",
        "\"firing\"",
        "\"labels\"",
        "\"startsAt\"",
        "\"title\"",
        "\"2026-03-14T09:26:53Z\"",
        "\"\\ud800\"",
        " ",
        "\n",
        "\u{feff}",
        "\\",
        "\"\\",
    ];
    vec(select(TOKENS), 0..40).prop_map(|tokens| tokens.concat().into_bytes())
}

/// A top-level object made of the shapes' field names and random values.
fn random_object() -> impl Strategy<Value = Value> {
    vec((key(), json_value()), 0..8).prop_map(|fields| Value::Object(fields.into_iter().collect()))
}

/// A fixture and the edits made to it.
#[derive(Debug, Clone)]
struct Mutant {
    fixture: usize,
    edits: Vec<Edit>,
    pretty: bool,
    byte_edits: Vec<ByteEdit>,
}

/// An edit of the fixture as JSON; `at` picks a node (or a string leaf, for
/// `Text`) by its number in document order, modulo their count.
#[derive(Debug, Clone)]
enum Edit {
    Replace { at: usize, with: Value },
    Text { at: usize, with: String },
    Remove { at: usize, which: usize },
    Insert { at: usize, key: String, with: Value },
    Rename { at: usize, which: usize, to: String },
    Duplicate { at: usize, which: usize },
}

/// An edit of the serialised bytes; positions are taken modulo the length.
#[derive(Debug, Clone)]
enum ByteEdit {
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Set(usize, u8),
}

fn mutant(source: Source) -> impl Strategy<Value = Mutant> {
    let own = own_fixtures(source).to_vec();
    let fixture = prop_oneof![
        6 => select(own),
        1 => 0..FIXTURES.len(),
    ];
    (
        fixture,
        vec(edit(), 0..5),
        any::<bool>(),
        prop_oneof![6 => Just(Vec::new()), 1 => vec(byte_edit(), 1..3)],
    )
        .prop_map(|(fixture, edits, pretty, byte_edits)| Mutant {
            fixture,
            edits,
            pretty,
            byte_edits,
        })
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = any::<usize>();
    prop_oneof![
        3 => (at, json_value()).prop_map(|(at, with)| Edit::Replace { at, with }),
        4 => (at, text()).prop_map(|(at, with)| Edit::Text { at, with }),
        2 => (at, any::<usize>()).prop_map(|(at, which)| Edit::Remove { at, which }),
        3 => (at, key(), json_value()).prop_map(|(at, key, with)| Edit::Insert { at, key, with }),
        1 => (at, any::<usize>(), key()).prop_map(|(at, which, to)| Edit::Rename { at, which, to }),
        1 => (at, any::<usize>()).prop_map(|(at, which)| Edit::Duplicate { at, which }),
    ]
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        any::<usize>().prop_map(ByteEdit::Truncate),
        (any::<usize>(), vec(any::<u8>(), 1..4)).prop_map(|(at, b)| ByteEdit::Insert(at, b)),
        (any::<usize>(), 1..16usize).prop_map(|(at, n)| ByteEdit::Delete(at, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| ByteEdit::Set(at, b)),
    ]
}

impl Mutant {
    fn apply(&self) -> Vec<u8> {
        let mut v: Value = serde_json::from_str(FIXTURES[self.fixture]).expect("fixtures are JSON");
        for edit in &self.edits {
            edit.apply(&mut v);
        }
        let mut bytes = serialise(&v, self.pretty);
        for edit in &self.byte_edits {
            edit.apply(&mut bytes);
        }
        bytes
    }
}

impl Edit {
    fn apply(&self, root: &mut Value) {
        match self {
            Edit::Replace { at, with } => *node(root, *at) = with.clone(),
            Edit::Text { at, with } => {
                if let Some(s) = string_leaf(root, *at) {
                    *s = with.clone();
                }
            }
            Edit::Remove { at, which } => match node(root, *at) {
                Value::Object(map) if !map.is_empty() => {
                    let key = map.keys().nth(which % map.len()).cloned();
                    map.remove(&key.expect("in range"));
                }
                Value::Array(items) if !items.is_empty() => {
                    items.remove(which % items.len());
                }
                _ => {}
            },
            Edit::Insert { at, key, with } => match node(root, *at) {
                Value::Object(map) => {
                    map.insert(key.clone(), with.clone());
                }
                Value::Array(items) => items.push(with.clone()),
                _ => {}
            },
            Edit::Rename { at, which, to } => {
                if let Value::Object(map) = node(root, *at)
                    && !map.is_empty()
                {
                    let key = map.keys().nth(which % map.len()).cloned();
                    let value = map.remove(&key.expect("in range")).expect("present");
                    map.insert(to.clone(), value);
                }
            }
            Edit::Duplicate { at, which } => {
                if let Value::Array(items) = node(root, *at)
                    && !items.is_empty()
                {
                    let item = items[which % items.len()].clone();
                    items.push(item);
                }
            }
        }
    }
}

impl ByteEdit {
    fn apply(&self, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let len = bytes.len();
        match self {
            ByteEdit::Truncate(at) => bytes.truncate(at % len),
            ByteEdit::Insert(at, b) => {
                let at = at % (len + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            ByteEdit::Delete(at, n) => {
                let at = at % len;
                bytes.drain(at..(at + n).min(len));
            }
            ByteEdit::Set(at, b) => bytes[at % len] = *b,
        }
    }
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Node number `n` (modulo the count) in document order.
fn node(root: &mut Value, n: usize) -> &mut Value {
    fn go<'a>(v: &'a mut Value, left: &mut usize) -> Option<&'a mut Value> {
        if *left == 0 {
            return Some(v);
        }
        *left -= 1;
        match v {
            Value::Array(items) => items.iter_mut().find_map(|item| go(item, left)),
            Value::Object(map) => map.values_mut().find_map(|item| go(item, left)),
            _ => None,
        }
    }
    let mut left = n % count_nodes(root);
    go(root, &mut left).expect("n is below the node count")
}

/// String leaf number `n` (modulo their count), if there is any.
fn string_leaf(root: &mut Value, n: usize) -> Option<&mut String> {
    fn strings(v: &mut Value) -> Vec<&mut String> {
        match v {
            Value::String(s) => vec![s],
            Value::Array(items) => items.iter_mut().flat_map(strings).collect(),
            Value::Object(map) => map.values_mut().flat_map(strings).collect(),
            _ => Vec::new(),
        }
    }
    let mut all = strings(root);
    if all.is_empty() {
        return None;
    }
    let i = n % all.len();
    Some(all.swap_remove(i))
}

// ----------------------------------------------------------------------
// JSON values, strings and raw fragments

/// Marks a string that [`serialise`] replaces with a raw fragment.
const RAW: char = '\u{F8FF}';

/// JSON a `serde_json::Value` cannot hold, or that a serialiser never
/// writes: numbers out of range, lone surrogates, invalid UTF-8, raw
/// control characters, nesting past serde_json's limit of 128, keys given
/// twice, NUL escapes in keys and values.
fn raw_fragments() -> Vec<Vec<u8>> {
    let mut raw: Vec<Vec<u8>> = [
        "1e400",
        "-1e400",
        "1E+999",
        "2e-400",
        "123456789012345678901234567890",
        "-123456789012345678901234567890",
        "18446744073709551616",
        "-9223372036854775809",
        "-0",
        "0.0",
        "1.0e2",
        "NaN",
        "Infinity",
        "\"\\ud800\"",
        "\"\\udc00\\ud800\"",
        "\"\\u0000\"",
        "\"a\\u0000b\"",
        "\"\\\\u0000\"",
        "\"\\U0000\"",
        "\"\\x00\"",
        "{\"k\": \"\\u0000\", \"k\": \"v\"}",
        "{\"k\": \"v\", \"k\": \"\\u0000\"}",
        "{\"\\u0000\": \"x\"}",
        "[1,]",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    raw.extend([
        b"\"\xff\xfe\"".to_vec(),
        b"\"\xed\xa0\x80\"".to_vec(),
        b"\"\xc0\x80\"".to_vec(),
        b"\"a\x00b\"".to_vec(),
        b"\"a\x01\x1fb\"".to_vec(),
    ]);
    for depth in [128usize, 129, 300] {
        raw.push(format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes());
    }
    raw.push(format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200)).into_bytes());
    raw
}

fn raw_marker(i: usize) -> String {
    format!("{RAW}{i}{RAW}")
}

/// The JSON text of `v`, with raw fragments put in for their markers.
fn serialise(v: &Value, pretty: bool) -> Vec<u8> {
    let mut bytes = if pretty {
        serde_json::to_vec_pretty(v)
    } else {
        serde_json::to_vec(v)
    }
    .expect("a Value serialises");
    if !bytes
        .windows(RAW.len_utf8())
        .any(|w| w == RAW.to_string().as_bytes())
    {
        return bytes;
    }
    for (i, fragment) in raw_fragments().iter().enumerate() {
        let marker = format!("\"{}\"", raw_marker(i)).into_bytes();
        bytes = replace_all(&bytes, &marker, fragment);
    }
    bytes
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

fn json_leaf() -> impl Strategy<Value = Value> {
    let raw_count = raw_fragments().len();
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => select(vec![0i64, -1, 1, 2, 3, 4, i64::MIN, i64::MAX]).prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        6 => text().prop_map(Value::String),
        2 => (0..raw_count).prop_map(|i| Value::String(raw_marker(i))),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            vec((key(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Keys: the shapes' own field names most of the time, else anything.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(FIELD_NAMES).prop_map(String::from),
        1 => Just(String::new()),
        1 => Just("\0".to_string()),
        1 => Just("a.b".to_string()),
        2 => text(),
    ]
}

/// Strings of every kind a sender may put in a field.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(ODD_STRINGS).prop_map(String::from),
        3 => timestamp(),
        2 => any::<String>(),
        2 => "[\\x00-\\x1f\\x7f\"\\\\]{0,6}",
        2 => "\\PC{0,24}",
        2 => (any::<String>(), any::<String>()).prop_map(|(a, b)| format!("{a}\0{b}")),
        1 => (any::<char>(), 1_000..70_000usize).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
}

const ODD_STRINGS: &[&str] = &[
    "",
    " ",
    "\0",
    "a\0",
    "\0\0\0",
    "\u{1}\u{1f}\u{7f}",
    "\\u0000",
    "firing",
    "resolved",
    "FIRING",
    "4",
    "1",
    "critical",
    "HighErrorRate",
    "日本語のアラート",
    "🔥🧯",
    "\u{202e}reversed",
    "\u{feff}bom",
    "\u{200b}",
    "e\u{301}",
    "İ",
    "\u{fffd}",
    "\u{10ffff}",
    "null",
    "{\"nested\": \"json\"}",
    "line\nbreak\r\n",
    "tab\there",
];

/// RFC 3339 and things that look like it.
fn timestamp() -> impl Strategy<Value = String> {
    const ODD: &[&str] = &[
        "0001-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "1970-01-01T00:00:00.001Z",
        "1969-12-31T23:59:59.999Z",
        "9999-12-31T23:59:59.999999999Z",
        "9999-12-31T23:59:60Z",
        "2026-03-14T09:26:60Z",
        "2026-02-29T00:00:00Z",
        "2024-02-29T00:00:00Z",
        "2026-03-14T09:26:53.123456789123456789Z",
        "2026-03-14t09:26:53z",
        "2026-03-14 09:26:53Z",
        "2026-03-14T09:26:53",
        "2026-03-14T09:26:53+24:00",
        "2026-03-14T09:26:53-23:59",
        "2026-03-14T09:26:53+99:99",
        "+275760-09-13T00:00:00Z",
        "-0001-01-01T00:00:00Z",
        "2026-03-14",
        "1773480413480",
        "yesterday",
    ];
    prop_oneof![
        select(ODD).prop_map(String::from),
        (
            prop_oneof![0..10_000i64, any::<i64>()],
            0..14u32,
            0..33u32,
            0..26u32,
            0..62u32,
            0..62u32,
            "(\\.[0-9]{1,12})?",
            select(vec![
                "Z", "z", "+00:00", "-00:00", "+02:00", "-23:59", "+24:00", "", "+02"
            ]),
        )
            .prop_map(|(y, mo, d, h, mi, s, frac, off)| {
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{off}")
            }),
    ]
}

// ----------------------------------------------------------------------
// The seed corpus, and what the fuzzer found

#[test]
fn the_fixtures_the_mutations_start_from_are_accepted() {
    for (i, source) in [
        Source::Alertmanager,
        Source::Alertmanager,
        Source::Alertmanager,
        Source::Grafana,
        Source::Grafana,
        Source::Generic,
        Source::Generic,
    ]
    .into_iter()
    .enumerate()
    {
        let parsed = intake::parse(source, FIXTURES[i].as_bytes())
            .unwrap_or_else(|e| panic!("fixture {i}: {e}"));
        check_accepted(source, &parsed).unwrap_or_else(|e| panic!("fixture {i}: {e}"));
    }
}

#[test]
fn the_path_check_knows_paths_from_other_strings() {
    let body = br#"{"alerts": [{"labels": {"a.b": 1, "": 2}}], "x": {"\u0000": 1}, "y": [[1]]}"#;
    let v: Value = serde_json::from_slice(body).unwrap();
    for good in [
        "alerts",
        "alerts[0]",
        "alerts[0].labels",
        "alerts[0].labels.a.b",
        "alerts[0].labels.",
        "alerts[0].startsAt",
        "version",
        "x.\\u0000 (its name)",
        "y[0][0]",
        r#"alerts[0].labels["a.b"]"#,
        r#"alerts[0].labels[""]"#,
        r#"x["\u0000"] (its name)"#,
    ] {
        assert!(resolves(good, &v), "{good}");
    }
    for bad in [
        "alerts[1]",
        "alerts[0].labels.c",
        "alerts.x",
        "nothing",
        "alerts[x]",
        "y[0][1]",
        "[0]",
        r#"alerts[0].labels["c"]"#,
        r#"alerts[0].labels["a.b""#,
    ] {
        assert!(!resolves(bad, &v), "{bad}");
    }
    // A body that is an array: refused for a NUL before its shape.
    assert!(resolves("[1][0]", &serde_json::json!([1, ["\u{0}"]])));
}

/// Alertmanager and Grafana bodies with a NUL in a label and, elsewhere,
/// a field firstline does not read holding JSON that a `serde_json::Value`
/// cannot hold.
fn nul_beside(unreadable: &[u8]) -> [(Source, Vec<u8>); 2] {
    let alerts = br#""alerts":[{"status":"firing","labels":{"a":"\u0000"},"startsAt":"2026-03-14T09:26:53Z"}]"#;
    let body = |version: &[u8]| {
        [
            &b"{"[..],
            version,
            b"\"x\":",
            unreadable,
            b",",
            alerts,
            b"}",
        ]
        .concat()
    };
    [
        (Source::Alertmanager, body(br#""version":"4","#)),
        (Source::Grafana, body(b"")),
    ]
}

/// Found by this fuzzer. `refuse_nul` (bot/src/intake/mod.rs) looks for
/// NULs in a `serde_json::Value` of the body and steps aside when the body
/// does not parse into one ("the parser names what is wrong with it"). But
/// the Alertmanager and Grafana parsers skip the fields they do not read
/// (typed fast path, and `parse_object_keeping`) without building values,
/// and skipping accepts a number out of range (`1e400`), a lone surrogate
/// (`"\ud800"`), invalid UTF-8 and nesting deeper than 128. So such a field
/// anywhere in the body switches the NUL check off and the NUL is accepted,
/// to fail every write on PostgreSQL later. (The generic parser builds a
/// `Value` of the whole body, so it refuses these bodies as invalid JSON.)
#[test]
fn a_nul_is_refused_even_beside_a_field_no_json_value_can_hold() {
    let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
    let mut accepted = Vec::new();
    for unreadable in [&b"1e400"[..], br#""\ud800""#, b"\"\xff\"", deep.as_bytes()] {
        for (source, body) in nul_beside(unreadable) {
            if let Err(e) = check(source, &body) {
                accepted.push(format!(
                    "{source:?} {}: {e}",
                    String::from_utf8_lossy(&body)
                ));
            }
        }
    }
    assert!(accepted.is_empty(), "{}", accepted.join("\n"));
}

/// Found by this fuzzer. A top-level key named `""` has the empty path, so
/// a refusal about it (or about something inside it) names the wrong
/// field: the generic parser refuses `{"": 1}` as an unknown field with
/// `field: ""` (every refusal is meant to name its field), and the NUL
/// check refuses `{"": {"\u0000": null}}` on `\u0000 (its name)`, a
/// top-level key the body does not have.
#[test]
fn a_refusal_about_a_key_named_empty_still_names_a_field() {
    let mut wrong = Vec::new();
    for (source, body) in [
        (Source::Generic, &br#"{"": 1}"#[..]),
        (Source::Generic, br#"{"title": "a", "": 1}"#),
        (Source::Alertmanager, br#"{"": {"\u0000": null}}"#),
        (Source::Grafana, br#"{"": {"\u0000": null}}"#),
        (Source::Generic, br#"{"": {"\u0000": null}}"#),
    ] {
        if let Err(e) = check(source, body) {
            wrong.push(format!("{source:?} {}: {e}", String::from_utf8_lossy(body)));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
