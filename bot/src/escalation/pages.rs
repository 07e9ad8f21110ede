//! The page handler: delivers `page` outbox intents (a step's pages, a
//! `/page` typed by a person, PagerDuty's acknowledge and resolve).
//!
//! Before anything is sent the page is claimed in the store
//! ([`Store::claim_page`]): a page of an escalation that stopped since it
//! was written (an acknowledgement) is cancelled there and never sent. A
//! contact's channels are tried in their order (`page_via`) until one
//! delivers; every attempt is on the timeline with its channel, how long
//! it took and what the far side said. When every channel failed and one
//! of them might work later, the whole page is retried with the outbox's
//! backoff, claimed again (so an acknowledgement meanwhile still stops it).

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tracing::warn;

use super::Escalation;
use super::model::{Contact, PageChannel};
use super::payload::{PagePayload, PageTo};
use crate::chat::messages::Messages;
use crate::chat::{ChatError, ChatPlatform, PostRequest};
use crate::domain::incident::Incident;
use crate::domain::time::Clock;
use crate::incident::{Change, Ledger};
use crate::outbox::{Failure, Handled, Handler};
use crate::pager::{PageMessage, PagerError, Pagers};
use crate::store::{ChatPost, OutboxItem, PageClaim, Store};

/// How long a claimed page is kept from another claim: a page tries each
/// of a contact's channels, each bounded by the pagers' timeout.
const PAGE_LEASE_MS: i64 = 120_000;

/// Delivers pages through the chat platform and the configured pagers.
pub struct PageSender<P: ChatPlatform> {
    pub store: Store,
    pub ledger: Ledger,
    pub platform: Arc<P>,
    pub pagers: Arc<Pagers>,
    pub escalation: Arc<Escalation>,
    pub messages: Messages,
    pub clock: Arc<dyn Clock>,
    /// Where incident threads are (a mention before the incident has one
    /// goes to the channel itself).
    pub channel: String,
    /// This process, on the pages it claims (see `Engine::owner`).
    pub owner: String,
}

/// One try on one channel, for the timeline.
struct Attempt {
    text: String,
    data: serde_json::Value,
}

/// PagerDuty's key for an incident: its trigger, acknowledge and resolve
/// are one PagerDuty incident.
pub fn dedup_key(inc: &Incident) -> String {
    format!("firstline-{}", inc.human_id)
}

fn ms_since(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

impl<P: ChatPlatform> Handler for PageSender<P> {
    const KIND: &'static str = "page";

    async fn handle(&self, item: &OutboxItem) -> Result<Handled, Failure> {
        let payload: PagePayload = serde_json::from_str(&item.payload)
            .map_err(|e| Failure::permanent(format!("malformed page payload: {e}")))?;
        let Some(incident_id) = item.incident_id else {
            return Err(Failure::permanent("a page of no incident".into()));
        };
        let who = payload.to.label();
        let claim = self
            .store
            .claim_page(
                &self.owner,
                item.id,
                Some(incident_id),
                payload.run,
                self.clock.now(),
                PAGE_LEASE_MS,
            )
            .await
            .map_err(Failure::store)?;
        match claim {
            PageClaim::Gone => return Ok(Handled::Settled),
            PageClaim::Stopped(reason) => {
                metrics::counter!("firstline_pages_total", "channel" => "none", "outcome" => "cancelled")
                    .increment(1);
                let text = format!("page to {who} not sent: {reason}");
                self.report(
                    incident_id,
                    vec![Attempt {
                        text,
                        data: json!({"action": "cancelled", "to": who, "page": item.id, "reason": reason}),
                    }],
                    None,
                )
                .await;
                return Ok(Handled::Settled);
            }
            PageClaim::Go => {}
        }
        let inc = self
            .store
            .incident(incident_id)
            .await
            .map_err(Failure::store)?
            .ok_or_else(|| Failure::permanent(format!("incident {incident_id} does not exist")))?;
        let text = self.messages.page(
            &inc,
            &payload.origin,
            payload.ack_within.as_deref(),
            payload.last,
            payload.note.as_deref(),
            None,
        );
        let msg = PageMessage {
            page_id: item.id,
            incident: inc.human_id.clone(),
            title: inc.title.clone(),
            severity: inc.severity,
            text,
            dedup_key: dedup_key(&inc),
        };
        let mut attempts = Vec::new();
        let outcome = match &payload.to {
            PageTo::Pagerduty { action } => {
                let t0 = Instant::now();
                let r = self.pagers.pagerduty_event(*action, &msg).await;
                let name = action.as_str();
                let ms = ms_since(t0);
                let outcome = if r.is_ok() { "sent" } else { "failed" };
                metrics::counter!("firstline_pages_total", "channel" => "pagerduty", "outcome" => outcome)
                    .increment(1);
                match r {
                    Ok(sent) => {
                        attempts.push(Attempt {
                            text: format!("PagerDuty {name} sent in {ms} ms ({})", sent.receipt),
                            data: json!({"action": "sent", "to": "pagerduty", "event": name, "ms": ms, "receipt": sent.receipt}),
                        });
                        Ok(())
                    }
                    Err(e) => {
                        attempts.push(Attempt {
                            text: format!("PagerDuty {name} failed after {ms} ms: {e}"),
                            data: json!({"action": "failed", "to": "pagerduty", "event": name, "ms": ms, "error": e.message}),
                        });
                        Err(e)
                    }
                }
            }
            PageTo::Contact { id, via } => match self.escalation.contacts.get(id) {
                Some(contact) => {
                    self.page_contact(item, &inc, contact, via, &msg, &mut attempts)
                        .await
                }
                None => {
                    let e = PagerError::permanent(format!(
                        "contact {id} is no longer in the configuration"
                    ));
                    attempts.push(Attempt {
                        text: format!("page to {id} not sent: {e}"),
                        data: json!({"action": "failed", "to": id, "error": e.message}),
                    });
                    Err(e)
                }
            },
            PageTo::ChatUser { user } => {
                self.mention(item, &inc, vec![user.clone()], &msg, user, &mut attempts)
                    .await
            }
            PageTo::Channel => {
                self.mention(item, &inc, Vec::new(), &msg, "the channel", &mut attempts)
                    .await
            }
        };
        let result = match outcome {
            Ok(()) => {
                // Recorded and marked delivered in one commit; should the
                // record fail, the dispatcher marks it.
                return Ok(if self.report(incident_id, attempts, Some(item.id)).await {
                    metrics::counter!("firstline_outbox_delivered_total").increment(1);
                    Handled::Settled
                } else {
                    Handled::Done
                });
            }
            Err(e) => {
                if matches!(payload.to, PageTo::Contact { .. }) {
                    let what = if e.retryable {
                        "tried again shortly"
                    } else {
                        "given up"
                    };
                    attempts.push(Attempt {
                        text: format!("page to {who} failed on every channel; {what}"),
                        data: json!({"action": "undelivered", "to": who, "retry": e.retryable}),
                    });
                }
                Err(Failure {
                    message: e.message,
                    retryable: e.retryable,
                    retry_after_ms: e.retry_after.map(|d| d.as_millis() as i64),
                })
            }
        };
        self.report(incident_id, attempts, None).await;
        result
    }
}

impl<P: ChatPlatform> PageSender<P> {
    /// Tries `contact`'s channels in order until one delivers.
    async fn page_contact(
        &self,
        item: &OutboxItem,
        inc: &Incident,
        contact: &Contact,
        via: &[PageChannel],
        msg: &PageMessage,
        attempts: &mut Vec<Attempt>,
    ) -> Result<(), PagerError> {
        let mut retryable = false;
        let mut retry_after = None;
        let mut last = String::new();
        for (n, channel) in via.iter().enumerate() {
            let t0 = Instant::now();
            let r = match channel {
                PageChannel::ChatDm => match self.chat_id(contact) {
                    Some(user) => self
                        .platform
                        .direct_message(&user, &msg.text)
                        .await
                        .map(|()| format!("{} DM", self.platform.name()))
                        .map_err(chat_error),
                    None => Err(self.no_chat_id(contact)),
                },
                PageChannel::ChatMention => match self.chat_id(contact) {
                    Some(user) => self.post(item, inc, vec![user], msg).await,
                    None => Err(self.no_chat_id(contact)),
                },
                other => self
                    .pagers
                    .send(*other, contact, msg)
                    .await
                    .map(|s| s.receipt),
            };
            let ms = ms_since(t0);
            let ch = channel.as_str();
            let outcome = if r.is_ok() { "sent" } else { "failed" };
            metrics::counter!("firstline_pages_total", "channel" => ch, "outcome" => outcome)
                .increment(1);
            match r {
                Ok(receipt) => {
                    attempts.push(Attempt {
                        text: format!("paged {} via {ch} in {ms} ms ({receipt})", contact.id),
                        data: json!({"action": "sent", "to": contact.id, "channel": ch, "ms": ms, "receipt": receipt, "page": item.id}),
                    });
                    return Ok(());
                }
                Err(e) => {
                    let next = via
                        .get(n + 1)
                        .map(|c| format!("; trying {}", c.as_str()))
                        .unwrap_or_default();
                    attempts.push(Attempt {
                        text: format!(
                            "page to {} via {ch} failed after {ms} ms: {e}{next}",
                            contact.id
                        ),
                        data: json!({"action": "failed", "to": contact.id, "channel": ch, "ms": ms, "error": e.message, "retryable": e.retryable, "page": item.id}),
                    });
                    retryable |= e.retryable;
                    retry_after = retry_after.or(e.retry_after);
                    last = e.message;
                }
            }
        }
        Err(PagerError {
            message: format!("every channel of {} failed (last: {last})", contact.id),
            retryable,
            retry_after,
        })
    }

    /// A mention of `users` (everyone when empty) in the incident's thread.
    async fn mention(
        &self,
        item: &OutboxItem,
        inc: &Incident,
        users: Vec<String>,
        msg: &PageMessage,
        who: &str,
        attempts: &mut Vec<Attempt>,
    ) -> Result<(), PagerError> {
        let t0 = Instant::now();
        let r = self.post(item, inc, users, msg).await;
        let ms = ms_since(t0);
        let outcome = if r.is_ok() { "sent" } else { "failed" };
        metrics::counter!("firstline_pages_total", "channel" => "chat_mention", "outcome" => outcome)
            .increment(1);
        match r {
            Ok(receipt) => {
                attempts.push(Attempt {
                    text: format!("paged {who} via chat_mention in {ms} ms ({receipt})"),
                    data: json!({"action": "sent", "to": who, "channel": "chat_mention", "ms": ms, "receipt": receipt, "page": item.id}),
                });
                Ok(())
            }
            Err(e) => {
                attempts.push(Attempt {
                    text: format!("page to {who} via chat_mention failed after {ms} ms: {e}"),
                    data: json!({"action": "failed", "to": who, "channel": "chat_mention", "ms": ms, "error": e.message, "page": item.id}),
                });
                Err(e)
            }
        }
    }

    /// Posts the page as a mention in the incident's thread, once per
    /// page (a retry after the post went out does not post again).
    async fn post(
        &self,
        item: &OutboxItem,
        inc: &Incident,
        users: Vec<String>,
        msg: &PageMessage,
    ) -> Result<String, PagerError> {
        if let Some(p) = self
            .store
            .post_for_outbox(item.id)
            .await
            .map_err(|e| PagerError::retryable(format!("the store failed: {e}")))?
        {
            return Ok(p.message_ref);
        }
        let req = PostRequest {
            outbox_id: item.id,
            incident_id: Some(inc.id),
            channel: self.channel.clone(),
            thread: inc.chat_thread.clone(),
            text: msg.text.clone(),
            template: Some("page".into()),
            root: None,
        };
        let posted = self
            .platform
            .post_mention(&req, &users)
            .await
            .map_err(chat_error)?;
        let record = ChatPost {
            id: 0,
            outbox_id: Some(item.id),
            platform: self.platform.name().to_string(),
            channel: self.channel.clone(),
            thread: inc.chat_thread.clone(),
            message_ref: posted.message_ref.clone(),
            // Before the incident has a thread, the mention is a post of
            // its own, not the incident's first.
            incident_id: inc.chat_thread.as_ref().map(|_| inc.id),
            text: msg.text.clone(),
            posted_ms: self.clock.now().0,
        };
        if let Err(e) = self.store.record_post(&record).await {
            warn!(incident_id = inc.id, error = %e, "a page's mention went out but could not be recorded");
        }
        Ok(posted.message_ref)
    }

    /// The contact's user id on the configured chat platform.
    fn chat_id(&self, contact: &Contact) -> Option<String> {
        let a = &contact.addresses;
        match self.platform.name() {
            "slack" => a.slack.clone(),
            "discord" => a.discord.clone(),
            // On the console a contact is known by their console name, or
            // else by their key.
            _ => a.console.clone().or_else(|| Some(contact.id.clone())),
        }
    }

    fn no_chat_id(&self, contact: &Contact) -> PagerError {
        PagerError::permanent(format!(
            "contact {} has no {} user id",
            contact.id,
            self.platform.name()
        ))
    }

    /// Puts the attempts on the incident's timeline (through the ledger,
    /// as every timeline event), marking the page `delivered` in the same
    /// commit when it went out. A ledger that refuses only loses the
    /// record, not the page: it is logged. Whether it was recorded.
    async fn report(
        &self,
        incident_id: i64,
        attempts: Vec<Attempt>,
        delivered: Option<i64>,
    ) -> bool {
        if attempts.is_empty() && delivered.is_none() {
            return true;
        }
        let lines = attempts.into_iter().map(|a| (a.text, a.data)).collect();
        if let Err(e) = self
            .ledger
            .change(
                "firstline",
                Change::PageReport {
                    id: incident_id,
                    lines,
                    delivered,
                },
            )
            .await
        {
            warn!(incident_id, error = %e, "a page's outcome could not be put on the timeline");
            return false;
        }
        true
    }
}

fn chat_error(e: ChatError) -> PagerError {
    PagerError {
        message: e.to_string(),
        retryable: e.retryable,
        retry_after: e.retry_after,
    }
}
