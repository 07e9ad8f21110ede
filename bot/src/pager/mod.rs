//! Pagers: how a page leaves firstline other than through chat.
//!
//! One file per paging channel (`email`, `phone` for SMS and calls,
//! `pagerduty`, `webhook`), each built from its `[pagers.*]` section and
//! sending one [`PageMessage`] to one contact. Chat DMs and mentions go
//! through the `ChatPlatform` seam instead (see `escalation::pages`).
//!
//! Every pager is time-bounded, names the far side's answer in its error
//! (never a secret), and says whether trying again could help: the page
//! handler falls through to the contact's next channel on any failure and
//! retries the whole page later only when some failure was retryable.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Pagers as PagerConfig;
use crate::domain::Severity;
use crate::escalation::{Contact, PageChannel};

/// What a page says, whatever carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageMessage {
    /// The page's own id (its outbox id): stable across retries, so a
    /// receiver can drop a repeat (the webhook's `X-Firstline-Page-Id`,
    /// the mail's `Message-ID`).
    pub page_id: i64,
    /// `INC-7`.
    pub incident: String,
    pub title: String,
    pub severity: Severity,
    /// What is wrong and how to acknowledge, in a few lines of plain text.
    pub text: String,
    /// Stable per incident (`firstline-INC-7`): PagerDuty's `dedup_key`,
    /// so the trigger, acknowledge and resolve of one incident are one
    /// PagerDuty incident.
    pub dedup_key: String,
}

/// What the far side answered to a page that went out, for the timeline
/// (a Twilio message SID, PagerDuty's dedup key, an SMTP reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub receipt: String,
}

/// Why a page did not go out on one channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PagerError {
    /// Lower-case, names the channel's far side and what it answered;
    /// never a secret.
    pub message: String,
    /// Whether the same page on the same channel could succeed later
    /// (a 429, a 5xx, a refused connection), as opposed to a 400 or a
    /// channel that is not configured.
    pub retryable: bool,
    /// When the far side said when to come back.
    pub retry_after: Option<Duration>,
}

impl PagerError {
    pub fn permanent(message: impl Into<String>) -> PagerError {
        PagerError {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }

    pub fn retryable(message: impl Into<String>) -> PagerError {
        PagerError {
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }
}

/// PagerDuty's `event_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PagerdutyAction {
    Trigger,
    Acknowledge,
    Resolve,
}

/// The configured pagers. A channel whose section is absent answers every
/// page with a permanent error naming the missing section (`check-config`
/// already refuses a contact paged on it; this covers the rest).
#[derive(Debug, Default)]
pub struct Pagers {
    // Filled in by the pager files.
}

impl Pagers {
    /// The pagers of `[pagers.*]`; each request is bounded by `timeout`.
    pub fn build(config: &PagerConfig, timeout: Duration) -> Result<Pagers, PagerError> {
        let _ = (config, timeout);
        Ok(Pagers::default())
    }

    /// Sends `msg` to `contact` on `channel` (any channel but the two chat
    /// ones, which go through the chat platform).
    pub async fn send(
        &self,
        channel: PageChannel,
        contact: &Contact,
        msg: &PageMessage,
    ) -> Result<Sent, PagerError> {
        let _ = (contact, msg);
        Err(PagerError::permanent(format!(
            "{} pages are not built yet",
            channel.as_str()
        )))
    }

    /// Whether `[pagers.pagerduty]` is configured (then every incident's
    /// acknowledgement and resolution are sent to it).
    pub fn has_pagerduty(&self) -> bool {
        false
    }

    /// Sends an acknowledge or resolve (or trigger) event for the
    /// incident of `msg` to PagerDuty, keyed by `msg.dedup_key`.
    pub async fn pagerduty_event(
        &self,
        action: PagerdutyAction,
        msg: &PageMessage,
    ) -> Result<Sent, PagerError> {
        let _ = (action, msg);
        Err(PagerError::permanent(
            "[pagers.pagerduty] is not configured",
        ))
    }
}
