//! Chat: the platform seam, message text, and what people's commands do.
//!
//! Only this module names chat SDKs. [`ChatPlatform`] is what the outbox
//! dispatcher delivers through; [`handler`] turns a command typed on any
//! platform into a change on the ledger and a reply, so platform adapters
//! only translate.

pub mod console;
pub mod discord;
pub mod handler;
pub mod messages;
pub mod platform;
pub mod reactions;
pub mod slack;
pub mod storm;

use std::future::Future;

/// The buttons on an incident's root message, the same on every platform
/// that has buttons: their ids and the command each one stands for.
pub mod buttons {
    /// Acknowledge; its value is the incident id (`INC-7`).
    pub const ACK: &str = "incident_ack";
    /// Resolve; its value is the incident id.
    pub const RESOLVE: &str = "incident_resolve";
    /// Rerun the runbook's checks; its value is `RUNBOOK INC-7`.
    pub const RERUN: &str = "runbook_rerun";
    /// Propose one of the runbook's actions; its value is `ACTION INC-7`.
    /// Several on one message carry a suffix (`action_propose_1`): ids are
    /// unique within a message.
    pub const PROPOSE: &str = "action_propose";

    /// The command line a press of button `id` with `value` stands for,
    /// or `None` for an id that is not one of the bot's. The value is the
    /// bot's own, and the command grammar checks it as if typed.
    pub fn command_line(id: &str, value: &str) -> Option<String> {
        match id {
            ACK => Some(format!("/incident ack {value}")),
            RESOLVE => Some(format!("/incident resolve {value}")),
            RERUN => Some(format!("/runbook run {value}")),
            p if p.starts_with(PROPOSE) => Some(format!("/action propose {value}")),
            _ => None,
        }
    }
}

/// A message to post, as the outbox dispatcher hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostRequest {
    /// The outbox item being delivered: platforms use it to avoid showing a
    /// redelivered item twice.
    pub outbox_id: i64,
    pub incident_id: Option<i64>,
    pub channel: String,
    /// The incident's thread, once its first message is out.
    pub thread: Option<String>,
    pub text: String,
    /// The message template the text came from (`opened`, `state_changed`,
    /// `findings`, …), when the ledger wrote it.
    pub template: Option<String>,
    /// The incident as its root message shows it, for platforms that keep
    /// one (Slack): posted before the first message, updated in place.
    pub root: Option<RootView>,
}

/// What an incident's root message shows: the state at a glance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootView {
    /// `INC-7`.
    pub id: String,
    pub title: String,
    /// `P1`…`P3`.
    pub severity: String,
    /// `triggered`, `acknowledged`, `mitigated`, `resolved`.
    pub state: String,
    pub runbook: Option<String>,
    pub failure_modes: Vec<String>,
    /// Time to detect so far (`3m10s`), when the impact start is known.
    pub ttd: Option<String>,
    /// Who acknowledged, as the timeline names them.
    pub acknowledged_by: Option<String>,
    /// Whether the root offers Acknowledge / Resolve (not once resolved).
    pub open: bool,
    /// The incident's opening text (its alerts), shown under the summary.
    pub opening: Option<String>,
    /// The runbook's actions that run once approved (reversible first):
    /// offered as "Propose" buttons where the platform has buttons.
    pub actions: Vec<String>,
}

/// Where a post landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The platform's id of the message (reactions refer to it).
    pub message_ref: String,
    /// The thread it belongs to (its own ref when it opened the thread).
    pub thread: String,
}

/// Why a platform call failed; `retry_after` when the platform said when.
#[derive(Debug, thiserror::Error)]
#[error("{platform}: {message}")]
pub struct ChatError {
    pub platform: &'static str,
    pub message: String,
    pub retry_after: Option<std::time::Duration>,
    /// Whether retrying can help (a 400 for a malformed message cannot).
    pub retryable: bool,
}

/// A chat platform the bot posts into.
pub trait ChatPlatform: Send + Sync + 'static {
    /// `console`, `slack`, `discord`: for logs, metrics and stored posts.
    fn name(&self) -> &'static str;

    /// Posts into the incident's thread (or opens it). Must not show the
    /// same `outbox_id` twice where the platform allows that to be known.
    fn post(&self, req: &PostRequest) -> impl Future<Output = Result<Posted, ChatError>> + Send;

    /// Replaces the text of an earlier message.
    fn update(
        &self,
        message_ref: &str,
        text: &str,
    ) -> impl Future<Output = Result<(), ChatError>> + Send;

    /// Posts `req` calling on `users` (the platform's user ids), or on
    /// everyone in the channel when `users` is empty (`@here`): a page
    /// through chat, in the incident's thread. The mention is the
    /// platform's own, so it notifies them.
    fn post_mention(
        &self,
        req: &PostRequest,
        users: &[String],
    ) -> impl Future<Output = Result<Posted, ChatError>> + Send {
        let who = if users.is_empty() {
            "@here".to_string()
        } else {
            users
                .iter()
                .map(|u| format!("@{u}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut req = req.clone();
        req.text = format!("{who} {}", req.text);
        async move { self.post(&req).await }
    }

    /// Sends a direct message to a user (a page on `chat_dm`).
    fn direct_message(
        &self,
        user: &str,
        text: &str,
    ) -> impl Future<Output = Result<(), ChatError>> + Send;

    /// Whether messages waiting for one thread are better posted as one
    /// (a platform that paces posts, like Slack's one a second per
    /// channel: a backlog would otherwise take minutes to drain).
    fn merges_backlog(&self) -> bool {
        false
    }

    /// Shows the incident's current state on its root message (`thread` is
    /// what `post` returned as the thread). Platforms without a root
    /// message have nothing to do.
    fn refresh_root(
        &self,
        thread: &str,
        root: &RootView,
    ) -> impl Future<Output = Result<(), ChatError>> + Send {
        let _ = (thread, root);
        async { Ok(()) }
    }
}
