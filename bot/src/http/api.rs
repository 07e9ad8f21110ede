//! Read-only incident API: list, one incident, its timeline, its posts and
//! its postmortem.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState};
use crate::postmortem;
use crate::store::IncidentFilter;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/incidents", get(list))
        .route("/api/incidents/{id}", get(show))
        .route("/api/incidents/{id}/timeline", get(timeline))
        .route("/api/incidents/{id}/posts", get(posts))
        .route("/api/incidents/{id}/postmortem", get(export))
}

/// `INC-42`, `inc-42` or `42`.
pub fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<commands::IncidentRef>()
        .map(|r| r.0)
        .map_err(|_| ApiError::BadRequest(format!("{raw:?} is not an incident id like INC-42")))
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("INC-{id} does not exist"))
}

type Answer = Result<Response, ApiError>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// `open` (default) or `all`.
    state: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Answer {
    let Query(q) = query.map_err(|_| {
        ApiError::BadRequest("query parameters are state=open|all and limit=N".into())
    })?;
    state.caught_up().await;
    let filter = match q.state.as_deref() {
        None | Some("open") => IncidentFilter::Open,
        Some("all") => IncidentFilter::All,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "state={other:?} is not open or all"
            )));
        }
    };
    let limit = super::error::limit(q.limit, 100, 1000)?;
    let items: Vec<_> = state
        .store
        .incidents(filter, limit)
        .await?
        .into_iter()
        .map(|i| json!({"response_times": i.milestones().response_times(), "incident": i}))
        .collect();
    Ok(axum::Json(json!({"incidents": items})).into_response())
}

async fn show(State(state): State<AppState>, Path(raw): Path<String>) -> Answer {
    let id = parse_id(&raw)?;
    state.caught_up().await;
    let incident = state
        .store
        .incident(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let alerts = state.store.alerts_of(id).await?;
    Ok(axum::Json(json!({
        "response_times": incident.milestones().response_times(),
        "incident": incident,
        "alerts": alerts,
    }))
    .into_response())
}

async fn timeline(State(state): State<AppState>, Path(raw): Path<String>) -> Answer {
    let id = parse_id(&raw)?;
    state.caught_up().await;
    let incident = state
        .store
        .incident(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let events = state.store.timeline(id).await?;
    Ok(axum::Json(json!({"incident": incident.human_id, "events": events})).into_response())
}

async fn posts(State(state): State<AppState>, Path(raw): Path<String>) -> Answer {
    let id = parse_id(&raw)?;
    state.caught_up().await;
    let incident = state
        .store
        .incident(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let posts = state.store.chat_posts(Some(id), 1000).await?;
    Ok(axum::Json(json!({"incident": incident.human_id, "posts": posts})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    format: Option<String>,
}

async fn export(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Answer {
    let id = parse_id(&raw)?;
    let Query(q) = query
        .map_err(|_| ApiError::BadRequest("the only query parameter is format=md|json".into()))?;
    let markdown = match q.format.as_deref() {
        None | Some("md") | Some("markdown") => true,
        Some("json") => false,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format={other:?} is not md or json"
            )));
        }
    };
    state.caught_up().await;
    let doc = postmortem::build(&state.store, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(if markdown {
        (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            postmortem::markdown(&doc, &state.messages),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            postmortem::json(&doc),
        )
            .into_response()
    })
}
