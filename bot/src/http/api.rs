//! Read-only incident API: list, one incident, its timeline, its posts,
//! its actions' audit and its postmortem.

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
        .route("/api/incidents/{id}/alerts", get(alerts))
        .route("/api/incidents/{id}/timeline", get(timeline))
        .route("/api/incidents/{id}/posts", get(posts))
        .route("/api/incidents/{id}/postmortem", get(export))
        .route("/api/incidents/{id}/actions", get(actions))
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

/// Incident `id`, or a 404 naming it.
async fn existing(
    state: &AppState,
    id: i64,
) -> Result<crate::domain::incident::Incident, ApiError> {
    state.store.incident(id).await?.ok_or_else(|| not_found(id))
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
    let incident = existing(&state, id).await?;
    let counts = state.store.alert_counts(id).await?;
    let alerts = state.store.alerts_page(id, 0, ALERTS_PAGE).await?;
    let next = next_page(&incident.human_id, "alerts", &alerts, ALERTS_PAGE, |a| a.id);
    let escalation = state.store.escalation(id).await?.map(|e| {
        json!({
            "run": e.run,
            "severity": e.severity,
            "state": e.state,
            "next_step": e.next_k,
            "due": e.due_ms.map(|d| crate::domain::time::Millis(d).to_rfc3339()),
            "reason": e.reason,
        })
    });
    Ok(axum::Json(json!({
        "response_times": incident.milestones().response_times(),
        "escalation": escalation,
        "incident": incident,
        "alert_counts": counts,
        "alerts": alerts,
        "alerts_next": next,
    }))
    .into_response())
}

/// Alerts per page by default (`limit` may ask for up to 1000).
const ALERTS_PAGE: i64 = 100;
/// Timeline events per page by default (`limit` may ask for up to 5000).
const TIMELINE_PAGE: i64 = 500;

/// `?after=ID&limit=N`: a page after the item with id `after`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

fn page(
    query: Result<Query<PageQuery>, QueryRejection>,
    default: i64,
    max: i64,
) -> Result<(i64, i64), ApiError> {
    let Query(q) = query.map_err(|_| {
        ApiError::BadRequest(
            "query parameters are after=ID (from the last page's next) and limit=N".into(),
        )
    })?;
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::BadRequest(format!("after={after} is not an id")));
    }
    Ok((after, super::error::limit(q.limit, default, max)?))
}

/// The URL of the page after `items` (`None` on the last page).
fn next_page<T>(
    incident: &str,
    what: &str,
    items: &[T],
    limit: i64,
    id: impl Fn(&T) -> i64,
) -> Option<String> {
    match items.last() {
        Some(last) if items.len() as i64 == limit => Some(format!(
            "/api/incidents/{incident}/{what}?after={}&limit={limit}",
            id(last)
        )),
        _ => None,
    }
}

async fn alerts(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Answer {
    let id = parse_id(&raw)?;
    let (after, limit) = page(query, ALERTS_PAGE, 1000)?;
    state.caught_up().await;
    let incident = existing(&state, id).await?;
    let counts = state.store.alert_counts(id).await?;
    let alerts = state.store.alerts_page(id, after, limit).await?;
    let next = next_page(&incident.human_id, "alerts", &alerts, limit, |a| a.id);
    Ok(axum::Json(json!({"incident": incident.human_id, "alert_counts": counts, "alerts": alerts, "next": next})).into_response())
}

async fn timeline(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Answer {
    let id = parse_id(&raw)?;
    let (after, limit) = page(query, TIMELINE_PAGE, 5000)?;
    state.caught_up().await;
    let incident = existing(&state, id).await?;
    let events = state.store.timeline_page(id, after, limit).await?;
    let next = next_page(&incident.human_id, "timeline", &events, limit, |e| e.id);
    Ok(
        axum::Json(json!({"incident": incident.human_id, "events": events, "next": next}))
            .into_response(),
    )
}

/// The audit of the incident's remediation: every proposal with its votes
/// (approvals, rejections; withdrawn ones are gone, and on the timeline)
/// and its tries.
async fn actions(State(state): State<AppState>, Path(raw): Path<String>) -> Answer {
    let id = parse_id(&raw)?;
    state.caught_up().await;
    let incident = existing(&state, id).await?;
    let (proposals, votes, runs) = state.store.actions_of(id).await?;
    let list: Vec<serde_json::Value> = proposals
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "action": p.action_id,
                "runbook": p.runbook_id,
                "title": p.title,
                "kind": p.category,
                "runs_as": p.run_kind,
                "reversible": p.reversible,
                "params": serde_json::from_str::<serde_json::Value>(&p.params).unwrap_or_default(),
                "described": p.described,
                "hash": p.hash,
                "approvers": serde_json::from_str::<serde_json::Value>(&p.approvers).unwrap_or_default(),
                "quorum": p.quorum,
                "two_person": p.two_person,
                "retry": p.retry,
                "proposer": p.proposer,
                "proposer_identity": p.proposer_identity,
                "state": p.state,
                "reason": p.reason,
                "created_ms": p.created_ms,
                "expires_ms": p.expires_ms,
                "updated_ms": p.updated_ms,
                "votes": votes.iter().filter(|v| v.proposal_id == p.id).collect::<Vec<_>>(),
                "tries": runs.iter().filter(|r| r.proposal_id == p.id).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(axum::Json(json!({"incident": incident.human_id, "actions": list})).into_response())
}

async fn posts(State(state): State<AppState>, Path(raw): Path<String>) -> Answer {
    let id = parse_id(&raw)?;
    state.caught_up().await;
    let incident = existing(&state, id).await?;
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
