//! The console platform's endpoints: feed commands and reactions in, read
//! posts back. Mounted on the console platform or with
//! `chat.console.enabled`; behind `chat.console.token` when it is set
//! (`auth::console`), and only then are reactions vouched for.

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::auth::Vouched;
use super::{ApiError, AppState};
use crate::chat::handler;
use crate::incident::{Change, LedgerError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console/commands", post(command))
        .route("/console/reactions", post(reaction))
        .route("/console/posts", get(posts))
}

type Answer = Result<Response, ApiError>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    /// Who typed it (shown on the timeline).
    user: String,
    /// The command line, e.g. `/incident ack INC-1`.
    text: String,
    /// The incident thread it was typed in, if any (`INC-1`).
    incident: Option<String>,
}

async fn command(
    State(state): State<AppState>,
    vouched: Option<Extension<Vouched>>,
    body: Result<axum::Json<CommandBody>, JsonRejection>,
) -> Answer {
    let axum::Json(body) = body.map_err(|e| {
        ApiError::from_json(e, r#"{"user", "text", "incident"?}"#, state.max_body_bytes)
    })?;
    if body.user.trim().is_empty() || body.user.chars().count() > handler::MAX_NAME_CHARS {
        return Err(ApiError::Unprocessable(format!(
            "user: must be 1 to {} characters",
            handler::MAX_NAME_CHARS
        )));
    }
    let thread = body
        .incident
        .as_deref()
        .map(super::api::parse_id)
        .transpose()?;
    // The proposer of an action, for the two-person rule: known only when
    // the caller held the console token.
    let me = vouched.map(|_| crate::approval::Identity::new("console", body.user.trim()));
    let reply = handler::handle_by(
        &state.commands,
        body.user.trim(),
        me.as_ref(),
        &body.text,
        thread,
    )
    .await;
    let code = if reply.ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((
        code,
        axum::Json(json!({"ok": reply.ok, "reply": reply.text})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReactionBody {
    user: String,
    /// The post reacted to (`message_ref` from `/console/posts`).
    message_ref: String,
    /// Emoji name, with or without colons, e.g. `white_check_mark`.
    emoji: String,
    /// The reaction was taken off again (as Slack's `reaction_removed`).
    #[serde(default)]
    removed: bool,
}

async fn reaction(
    State(state): State<AppState>,
    vouched: Option<Extension<Vouched>>,
    body: Result<axum::Json<ReactionBody>, JsonRejection>,
) -> Answer {
    let axum::Json(body) = body.map_err(|e| {
        ApiError::from_json(
            e,
            r#"{"user", "message_ref", "emoji", "removed"?}"#,
            state.max_body_bytes,
        )
    })?;
    let emoji = body.emoji.trim().trim_matches(':').to_string();
    handler::check_reaction(&body.user, &emoji, &body.message_ref)
        .map_err(ApiError::Unprocessable)?;
    state.caught_up().await;
    let post = state
        .store
        .post_by_ref("console", &body.message_ref)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no console post {:?}", body.message_ref)))?;
    let id = post
        .incident_id
        .ok_or_else(|| ApiError::Unprocessable("that post belongs to no incident".into()))?;
    let change = Change::Reaction {
        id,
        emoji,
        message_ref: body.message_ref,
        removed: body.removed,
        // Only a caller holding chat.console.token speaks for the user it
        // names; without the token anyone who can reach the port can name
        // any user, so the reaction is recorded but approves nothing.
        by: vouched.map(|_| crate::approval::Identity::new("console", body.user.trim())),
    };
    match state.ledger.change(body.user.trim(), change).await {
        Ok(o) => Ok(axum::Json(json!({"ok": true, "reply": o.answer})).into_response()),
        Err(e @ LedgerError::NotFound(_)) => Err(ApiError::NotFound(e.to_string())),
        Err(LedgerError::Store(e)) => {
            tracing::warn!(error = %e, "console reaction: the store failed");
            Err(ApiError::Unavailable(
                "could not record the reaction, nothing changed; try again".into(),
            ))
        }
        Err(e) => Err(ApiError::Unprocessable(e.to_string())),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostsQuery {
    limit: Option<i64>,
}

async fn posts(
    State(state): State<AppState>,
    query: Result<Query<PostsQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let Query(q) =
        query.map_err(|_| ApiError::BadRequest("the query parameter is limit=N".into()))?;
    let limit = super::error::limit(q.limit, 200, 5000)?;
    state.caught_up().await;
    let posts = state.store.chat_posts(None, limit).await?;
    Ok(axum::Json(json!({"posts": posts})).into_response())
}
