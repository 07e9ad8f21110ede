//! What people do in Slack (slash commands, button presses, reactions),
//! acted on one way whether it came over HTTP (`http::slack`, once the
//! signature is checked) or through Socket Mode ([`super::socket`]).
//!
//! - An event is acted on once per `event_id`, recorded in the store
//!   (`first_sight("slack", id)`), so a re-sent event is recognised across
//!   a restart and across a switch between the two modes. One that could
//!   not be acted on is forgotten again, so Slack's retry is.
//! - A command answers with its reply if it is done within
//!   `chat.slack.answer_within_ms`, else "working on it" at once and the
//!   reply through the command's `response_url` when done.
//! - A button is acknowledged at once; its answer follows to the presser.
//!
//! Only the caller sees these answers; what changes an incident is posted
//! in its thread as well.

use slack_morphism::prelude::*;
use tracing::{info, warn};

use super::Slack;
use crate::chat::handler::{self, CommandContext, Reply};
use crate::chat::reactions;
use crate::domain::time::Millis;

/// Where what Slack sends is acted on. Cheap to clone.
#[derive(Clone)]
pub struct Inbound {
    slack: Slack,
    commands: CommandContext,
}

impl Inbound {
    pub fn new(slack: Slack, commands: CommandContext) -> Inbound {
        Inbound { slack, commands }
    }

    pub fn slack(&self) -> &Slack {
        &self.slack
    }

    /// An Events API callback, acted on once per `event_id`. `Err` (with
    /// why) when it was not done and Slack should send it again.
    pub async fn event(&self, callback: SlackPushEventCallback) -> Result<(), String> {
        let id = callback.event_id.to_string();
        let now = Millis::from_datetime(chrono::Utc::now());
        match self.commands.store.first_sight("slack", &id, now).await {
            Ok(true) => {}
            Ok(false) => {
                info!(event_id = %id, "slack: a re-sent event was already handled");
                return Ok(());
            }
            Err(e) => return Err(format!("could not record the event: {e}")),
        }
        match self.on_event(callback.event).await {
            Ok(()) => Ok(()),
            Err(retry) => {
                // Not done: forget it, so Slack's retry is acted on.
                let _ = self.commands.store.forget_event("slack", &id).await;
                warn!(event_id = %id, error = %retry, "slack: event not handled; Slack will retry");
                Err(retry)
            }
        }
    }

    /// Acts on one event; `Err` when it should be retried.
    async fn on_event(&self, event: SlackEventCallbackBody) -> Result<(), String> {
        let (user, emoji, item, removed) = match event {
            SlackEventCallbackBody::ReactionAdded(r) => (r.user, r.reaction, r.item, false),
            SlackEventCallbackBody::ReactionRemoved(r) => (r.user, r.reaction, r.item, true),
            // Subscribed to nothing else; anything else is not ours to act on.
            _ => return Ok(()),
        };
        let SlackReactionsItem::Message(message) = item else {
            return Ok(());
        };
        let user = user.to_string();
        if self.slack.is_bot(&user) {
            return Ok(());
        }
        let Some(channel) = message.origin.channel.as_ref() else {
            return Ok(());
        };
        let message_ref = format!("{channel}/{}", message.origin.ts);
        let Some(id) = reactions::incident_of_post(&self.commands, "slack", &message_ref).await?
        else {
            return Ok(());
        };
        let actor = self.slack.actor(&user, None).await;
        // From a signed event (or Socket Mode's authenticated socket).
        let by = crate::approval::Identity::new("slack", &user);
        reactions::apply(
            &self.commands,
            id,
            &actor,
            by,
            emoji.as_ref(),
            &message_ref,
            removed,
        )
        .await
    }

    /// A slash command: its reply if it is done within
    /// `chat.slack.answer_within_ms`, else "working on it" now and the
    /// reply through its `response_url` when done. `known` is the caller's
    /// name if the request carried one.
    pub async fn command(&self, command: &SlackCommandEvent, known: Option<&str>) -> Reply {
        let line = format!(
            "{} {}",
            command.command,
            command.text.as_deref().unwrap_or("")
        );
        let response_url = command.response_url.0.to_string();
        let ctx = self.commands.clone();
        // Naming the caller may ask Slack (users.info): inside the time.
        let mut work = tokio::spawn({
            let line = line.clone();
            let slack = self.slack.clone();
            let user = command.user_id.to_string();
            let channel = command.channel_id.to_string();
            let known = known.map(str::to_string);
            async move {
                let actor = slack.actor(&user, known.as_deref()).await;
                // Typed in an incident's own channel: about that incident.
                let here = slack.incident_of_channel(&ctx.store, &channel).await;
                let me = crate::approval::Identity::new("slack", &user);
                handler::handle_by(&ctx, &actor, Some(&me), line.trim(), here).await
            }
        });
        // No time at all (`answer_within_ms = 0`) means every answer follows.
        let within = self.slack.answer_within();
        let done = match within.is_zero() {
            true => None,
            false => tokio::time::timeout(within, &mut work).await.ok(),
        };
        match done {
            Some(done) => reply_of(done),
            None => {
                let slack = self.slack.clone();
                tokio::spawn(async move {
                    let reply = reply_of(work.await);
                    if let Err(e) = slack.respond(&response_url, &shown(&reply)).await {
                        warn!(error = %e, "slack: the late answer could not be delivered");
                    }
                });
                Reply {
                    text: format!("working on it: {}", crate::text::clip(line.trim(), 100)),
                    ok: true,
                }
            }
        }
    }

    /// A button press: acted on in the background, its answer to the
    /// presser through the `response_url`. `Err` (naming it) for an action
    /// that is not one of the bot's buttons.
    pub async fn interaction(&self, event: SlackInteractionEvent) -> Result<(), String> {
        let SlackInteractionEvent::BlockActions(press) = event else {
            return Ok(());
        };
        let (Some(user), Some(action)) = (
            press.user.as_ref(),
            press.actions.as_ref().and_then(|a| a.first()),
        ) else {
            return Ok(());
        };
        let value = action.value.clone().unwrap_or_default();
        // The value is the bot's own (an incident id, `RUNBOOK INC-n`); the
        // command grammar checks it as if typed.
        let id = action.action_id.to_string();
        let Some(line) = crate::chat::buttons::command_line(&id, &value) else {
            return Err(format!("unknown action {id:?}"));
        };
        let known = user.name.clone().or(user.username.clone());
        let user = user.id.to_string();
        let response_url = press.response_url.as_ref().map(|u| u.0.to_string());
        let ctx = self.commands.clone();
        let slack = self.slack.clone();
        tokio::spawn(async move {
            let actor = slack.actor(&user, known.as_deref()).await;
            let me = crate::approval::Identity::new("slack", &user);
            let reply = handler::handle_by(&ctx, &actor, Some(&me), &line, None).await;
            // Nowhere to answer: the thread shows what changed.
            let Some(url) = response_url else { return };
            if let Err(e) = slack.respond(&url, &shown(&reply)).await {
                warn!(error = %e, "slack: the answer to a button could not be delivered");
            }
        });
        Ok(())
    }
}

fn reply_of(done: Result<Reply, tokio::task::JoinError>) -> Reply {
    done.unwrap_or_else(|e| Reply {
        text: format!("the command failed inside firstline ({e}); nothing may have changed, check the incident"),
        ok: false,
    })
}

/// A reply as the caller reads it: a refusal marked as one.
fn shown(reply: &Reply) -> String {
    if reply.ok {
        reply.text.clone()
    } else {
        format!("⚠️ {}", reply.text)
    }
}

/// The answer to a slash command, as its HTTP response or its Socket Mode
/// acknowledgement carries it: only the caller sees it.
pub fn command_answer(reply: &Reply) -> SlackCommandEventResponse {
    SlackCommandEventResponse::new(
        SlackMessageContent::new()
            .with_text(super::escape(&crate::text::clip(&shown(reply), 3000))),
    )
    .with_response_type(SlackMessageResponseType::Ephemeral)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_answer_is_ephemeral_escaped_and_marks_a_refusal() {
        let ok = serde_json::to_value(command_answer(&Reply {
            text: "INC-1 <acknowledged>".into(),
            ok: true,
        }))
        .expect("serializes");
        assert_eq!(
            ok,
            serde_json::json!({"response_type": "ephemeral", "text": "INC-1 &lt;acknowledged&gt;"})
        );
        let refused = serde_json::to_value(command_answer(&Reply {
            text: "no INC-9".into(),
            ok: false,
        }))
        .expect("serializes");
        assert_eq!(refused["text"], "⚠️ no INC-9");
    }
}
