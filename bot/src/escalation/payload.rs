//! What a `page` outbox intent carries: written by the ledger when a step
//! fires (or a person types `/page`), read by the page handler
//! (`escalation::pages`) when it goes out.

use serde::{Deserialize, Serialize};

use super::model::PageChannel;
use crate::pager::PagerdutyAction;

/// One page to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagePayload {
    /// The escalation run and step it was written for; `None` for a page
    /// typed by a person, which an acknowledgement does not cancel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<i64>,
    pub to: PageTo,
    /// The step's target that led here (`rotation:primary`), or the `/page`
    /// argument as typed.
    pub because: String,
    /// `step 1/2 of P1` (or `paged by ann`): where the page came from, as
    /// the person paged reads it.
    pub origin: String,
    /// How long they have to acknowledge before the next step (`5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_within: Option<String>,
    /// The policy's last step: nobody else is paged after it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last: bool,
    /// What a person typed after `/page @who`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Who (or what) a page goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PageTo {
    /// A configured contact, on their channels in order.
    Contact { id: String, via: Vec<PageChannel> },
    /// A chat user who is not a contact: mentioned in the incident's thread.
    ChatUser { user: String },
    /// The incident's thread, with an @here-style mention.
    Channel,
    /// PagerDuty's event for the incident follows its acknowledgement or
    /// resolution.
    Pagerduty { action: PagerdutyAction },
}

impl PageTo {
    /// How the timeline names the recipient.
    pub fn label(&self) -> String {
        match self {
            PageTo::Contact { id, .. } => id.clone(),
            PageTo::ChatUser { user } => user.clone(),
            PageTo::Channel => "the channel".into(),
            PageTo::Pagerduty { .. } => "PagerDuty".into(),
        }
    }
}
