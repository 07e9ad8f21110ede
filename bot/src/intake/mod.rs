//! Intake: parsing webhook bodies into [`IncomingAlert`]s and the answers
//! senders get.
//!
//! The answer contract follows seed 000: every answer carries `status`
//! (accepted | duplicate | rejected | failed) and, when not accepted,
//! `reason_class` and `retry_advice`, with the HTTP status a sender's retry
//! logic expects. Alertmanager retries 5xx only and drops a 429 for good, so
//! anything that may succeed later is a 503 with `Retry-After`, never 429.
//!
//! [`IncomingAlert`]: crate::domain::alert::IncomingAlert

pub mod alertmanager;
pub mod generic;
pub mod grafana;
pub mod journal;
pub mod parse_error;

use axum::http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::domain::alert::{ParsedWebhook, Source};
use crate::incident::IngestOutcome;
pub use parse_error::ParseError;

/// Parses a body from `source`.
pub fn parse(source: Source, body: &[u8]) -> Result<ParsedWebhook, ParseError> {
    refuse_nul(body)?;
    match source {
        Source::Alertmanager => alertmanager::parse(body),
        Source::Grafana => grafana::parse(body),
        Source::Generic => generic::parse(body),
    }
}

/// Refuses a body with a NUL character (`\\u0000`) in any string, naming
/// the field: PostgreSQL's text cannot hold one, and an alert accepted
/// on one backend must be storable on both (an accepted alert that then
/// failed every write held up all incident-making behind it). JSON can
/// carry NUL only as that escape: the body's bytes are scanned for it
/// (whatever else the body holds), and only then is it walked to name
/// the field.
fn refuse_nul(body: &[u8]) -> Result<(), ParseError> {
    if !has_nul_escape(body) {
        return Ok(());
    }
    let field = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| nul_path(&value, ""))
        .unwrap_or_else(|| "body".to_string());
    Err(ParseError::new(
        field,
        "contains a NUL character (\\u0000), which cannot be stored; remove it",
    ))
}

/// Whether the JSON text has a `\\u0000` escape (an escaped backslash
/// followed by `u0000` is not one).
fn has_nul_escape(body: &[u8]) -> bool {
    let mut i = 0;
    while let Some(at) = body[i..].iter().position(|b| *b == b'\\') {
        let escape = i + at + 1;
        if body[escape..].starts_with(b"u0000") {
            return true;
        }
        // Skip the escaped character, whatever it is.
        i = escape + 1;
        if i >= body.len() {
            return false;
        }
    }
    false
}

/// The JSON path of the first string (value or key) holding a NUL.
fn nul_path(v: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) if s.contains('\0') => Some(if at.is_empty() {
            "body".to_string()
        } else {
            at.to_string()
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item, &format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let field = parse_error::join_path(at, k);
            if k.contains('\0') {
                return Some(format!("{field} (its name)"));
            }
            nul_path(item, &field)
        }),
        _ => None,
    }
}

/// Checks an `Authorization: Bearer …` header against the source's token in
/// constant time. `None` expected means the source is open.
pub fn authorize(expected: Option<&SecretString>, header: Option<&str>) -> Result<(), Refusal> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let Some(header) = header else {
        return Err(Refusal::Auth("missing Authorization: Bearer token".into()));
    };
    let Some(token) = bearer(header) else {
        return Err(Refusal::Auth(
            "Authorization header is not a Bearer token".into(),
        ));
    };
    if same_token(token, expected) {
        Ok(())
    } else {
        Err(Refusal::Auth("bearer token does not match".into()))
    }
}

/// The token of an `Authorization: Bearer …` header value, trimmed; `None`
/// for another scheme.
pub fn bearer(header: &str) -> Option<&str> {
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
}

/// Whether `presented` is the `expected` token, compared in constant time
/// (the time taken says nothing about where they differ).
pub fn same_token(presented: &str, expected: &SecretString) -> bool {
    bool::from(
        presented
            .as_bytes()
            .ct_eq(expected.expose_secret().as_bytes()),
    )
}

/// `status` of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Accepted,
    Duplicate,
    Rejected,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Duplicate => "duplicate",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
        }
    }
}

/// Why a delivery was not stored (seed 000's reason classes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Missing or wrong bearer token: 401.
    Auth(String),
    /// The body is not JSON at all: 400; a field is wrong: 422.
    Invalid(ParseError),
    /// Larger than `server.max_body_bytes`: 413.
    TooLarge(usize),
    /// An idempotency key reused with a different body: 422.
    KeyReused(String),
    /// Could not store it now (database, load shedding): 503 + Retry-After.
    Infra(String),
}

/// The JSON body of every intake answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_advice: Option<&'static str>,
    /// What is wrong, for a person reading the sender's logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The field at fault, e.g. `alerts[1].startsAt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<IngestOutcome>,
}

/// Seconds a sender is asked to wait after a 503.
pub const RETRY_AFTER_SECS: u64 = 5;

impl Answer {
    pub fn from_outcome(outcome: IngestOutcome) -> (StatusCode, Answer) {
        let all_duplicates = outcome.accepted == 0 && outcome.duplicates > 0;
        let answer = if all_duplicates {
            Answer {
                status: Status::Duplicate,
                reason_class: Some("duplicate"),
                retry_advice: Some("do_not_retry"),
                error: None,
                field: None,
                outcome: Some(outcome),
            }
        } else {
            Answer {
                status: Status::Accepted,
                reason_class: None,
                retry_advice: None,
                error: None,
                field: None,
                outcome: Some(outcome),
            }
        };
        (StatusCode::OK, answer)
    }

    pub fn from_refusal(r: Refusal) -> (StatusCode, Answer) {
        let refused = |status, class, advice, error: String, field| Answer {
            status,
            reason_class: Some(class),
            retry_advice: Some(advice),
            error: Some(error),
            field,
            outcome: None,
        };
        match r {
            Refusal::Auth(m) => (
                StatusCode::UNAUTHORIZED,
                refused(Status::Rejected, "auth", "retry_after_fix", m, None),
            ),
            Refusal::Invalid(e) => {
                let code = if e.field == "body" {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                (
                    code,
                    refused(
                        Status::Rejected,
                        "validation",
                        "retry_after_fix",
                        e.to_string(),
                        Some(e.field),
                    ),
                )
            }
            Refusal::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                refused(
                    Status::Rejected,
                    "validation",
                    "retry_after_fix",
                    format!("body is larger than the {limit}-byte limit (server.max_body_bytes)"),
                    Some("body".into()),
                ),
            ),
            Refusal::KeyReused(key) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                refused(
                    Status::Rejected,
                    "validation",
                    "retry_after_fix",
                    format!(
                        "idempotency key {key:?} was already used with a different body; send a new key for a new alert"
                    ),
                    Some("Idempotency-Key".into()),
                ),
            ),
            Refusal::Infra(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                refused(Status::Failed, "infra", "retry_with_backoff", m, None),
            ),
        }
    }
}
