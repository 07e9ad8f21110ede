//! Alert webhooks. A 2xx is sent only after the alerts are durable (in
//! the intake journal, see `intake::journal`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use sha2::{Digest, Sha256};
use tracing::warn;

use super::{ApiError, AppState};
use crate::domain::alert::Source;
use crate::incident::{Idempotency, LedgerError};
use crate::intake::{self, Answer, Refusal};
use crate::log_limit::Every;

static REFUSED_4XX: Every = Every::new(std::time::Duration::from_secs(10));
static REFUSED_5XX: Every = Every::new(std::time::Duration::from_secs(10));

/// Lists every (source, status) of `firstline_alerts_total` at zero, so
/// that a dashboard's rate() works from the first scrape.
pub fn register_metrics() {
    for source in [Source::Alertmanager, Source::Grafana, Source::Generic] {
        for status in ["accepted", "duplicate", "rejected", "failed"] {
            metrics::counter!("firstline_alerts_total", "source" => source.as_str(), "status" => status)
                .increment(0);
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/hooks/{source}", post(receive))
}

async fn receive(
    State(state): State<AppState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(source) = Source::parse(&source) else {
        return ApiError::NotFound(format!(
            "unknown alert source {source:?}; use /hooks/alertmanager, /hooks/grafana or /hooks/generic"
        ))
        .into_response();
    };
    let (code, answer) = match accept(&state, source, &headers, body).await {
        Ok(outcome) => Answer::from_outcome(outcome),
        Err(refusal) => {
            let (code, answer) = Answer::from_refusal(refusal);
            // Once per request would bury the log under a storm.
            let every = if code.is_server_error() {
                &REFUSED_5XX
            } else {
                &REFUSED_4XX
            };
            if let Some(held_back) = every.due() {
                warn!(
                    source = source.as_str(),
                    status = code.as_u16(),
                    error = answer.error.as_deref().unwrap_or(""),
                    held_back,
                    "alert delivery refused (at most one such warning every 10 s; held_back counts the others)"
                );
            }
            metrics::counter!("firstline_alerts_total", "source" => source.as_str(), "status" => answer.status.as_str()).increment(1);
            (code, answer)
        }
    };
    let mut response = (code, axum::Json(answer)).into_response();
    if code == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(intake::RETRY_AFTER_SECS),
        );
    }
    response
}

async fn accept(
    state: &AppState,
    source: Source,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<crate::incident::IngestOutcome, Refusal> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    intake::authorize(state.tokens.get(source.as_str()), auth)?;
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Refusal::TooLarge(state.max_body_bytes)
        }
        other => Refusal::Invalid(intake::ParseError::new(
            "body",
            format!("could not read the body: {other}"),
        )),
    })?;
    let webhook = intake::parse(source, &body).map_err(Refusal::Invalid)?;

    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 200)
                .ok_or_else(|| {
                    Refusal::Invalid(intake::ParseError::new(
                        "Idempotency-Key",
                        "must be 1 to 200 visible ASCII characters",
                    ))
                })?;
            let request_hash = hex::encode(Sha256::digest(&body));
            Some(Idempotency {
                key: key.to_string(),
                request_hash,
            })
        }
    };

    state
        .journal
        .accept(source, webhook, idempotency)
        .await
        .map_err(|e| match e {
            LedgerError::KeyReused(k) => Refusal::KeyReused(k),
            LedgerError::Overloaded => {
                Refusal::Infra("intake is at capacity; nothing was stored, retry shortly".into())
            }
            other => Refusal::Infra(format!("nothing was stored: {other}")),
        })
}
