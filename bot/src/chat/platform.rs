//! The configured chat platform: a closed set (console, Slack, Discord), so an enum
//! that hands each call to the one in use, as `Store` does for its two
//! backends. The outbox dispatcher is generic over [`ChatPlatform`]; this is
//! the one type the app builds it with.

use super::console::Console;
use super::discord::Discord;
use super::slack::Slack;
use super::{ChatError, ChatPlatform, PostRequest, Posted, RootView};

/// The platform incident threads go to (`chat.platform`).
#[derive(Clone)]
pub enum Platform {
    Console(Console),
    Slack(Slack),
    Discord(Discord),
}

impl ChatPlatform for Platform {
    fn name(&self) -> &'static str {
        match self {
            Platform::Console(p) => p.name(),
            Platform::Slack(p) => p.name(),
            Platform::Discord(p) => p.name(),
        }
    }

    async fn post(&self, req: &PostRequest) -> Result<Posted, ChatError> {
        match self {
            Platform::Console(p) => p.post(req).await,
            Platform::Slack(p) => p.post(req).await,
            Platform::Discord(p) => p.post(req).await,
        }
    }

    async fn update(&self, message_ref: &str, text: &str) -> Result<(), ChatError> {
        match self {
            Platform::Console(p) => p.update(message_ref, text).await,
            Platform::Slack(p) => p.update(message_ref, text).await,
            Platform::Discord(p) => p.update(message_ref, text).await,
        }
    }

    async fn post_mention(&self, req: &PostRequest, users: &[String]) -> Result<Posted, ChatError> {
        match self {
            Platform::Console(p) => p.post_mention(req, users).await,
            Platform::Slack(p) => p.post_mention(req, users).await,
            Platform::Discord(p) => p.post_mention(req, users).await,
        }
    }

    async fn direct_message(&self, user: &str, text: &str) -> Result<(), ChatError> {
        match self {
            Platform::Console(p) => p.direct_message(user, text).await,
            Platform::Slack(p) => p.direct_message(user, text).await,
            Platform::Discord(p) => p.direct_message(user, text).await,
        }
    }

    fn merges_backlog(&self) -> bool {
        match self {
            Platform::Console(p) => p.merges_backlog(),
            Platform::Slack(p) => p.merges_backlog(),
            Platform::Discord(p) => p.merges_backlog(),
        }
    }

    async fn refresh_root(&self, thread: &str, root: &RootView) -> Result<(), ChatError> {
        match self {
            Platform::Console(p) => p.refresh_root(thread, root).await,
            Platform::Slack(p) => p.refresh_root(thread, root).await,
            Platform::Discord(p) => p.refresh_root(thread, root).await,
        }
    }
}
