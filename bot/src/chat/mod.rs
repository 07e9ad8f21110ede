//! Chat: the platform seam, message text, and what people's commands do.
//!
//! Only this module names chat SDKs. [`ChatPlatform`] is what the outbox
//! dispatcher delivers through; [`handler`] turns a command typed on any
//! platform into a change on the ledger and a reply, so platform adapters
//! only translate.

pub mod console;
pub mod handler;
pub mod messages;

use std::future::Future;

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

    /// Sends a direct message to a user (pages use this later).
    fn direct_message(
        &self,
        user: &str,
        text: &str,
    ) -> impl Future<Output = Result<(), ChatError>> + Send;
}
