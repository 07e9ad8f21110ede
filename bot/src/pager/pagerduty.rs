//! PagerDuty Events API v2: `POST {api_url}/v2/enqueue`.
//!
//! A trigger carries the page:
//!
//! ```json
//! {"routing_key": "…", "event_action": "trigger", "dedup_key": "firstline-INC-7",
//!  "payload": {"summary": "[P1] INC-7: title", "source": "firstline",
//!              "severity": "critical",
//!              "custom_details": {"incident": "INC-7", "text": "…"}}}
//! ```
//!
//! An acknowledge or resolve carries only `routing_key`, `event_action`
//! and `dedup_key`: the dedup key (one per incident) is what makes the
//! three one PagerDuty incident. PagerDuty answers 202 when it enqueued
//! the event; a 400 is final (its `message` and `errors` are quoted); a
//! 429 or a 5xx may pass. The routing key never appears in a message.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use url::Url;

use super::{
    PageMessage, PagerError, PagerdutyAction, Sent, far_side, headline, parse_url, post, refused,
    scrub,
};
use crate::config::escalation::PagerdutySettings;
use crate::domain::Severity;

/// PagerDuty's limit on `payload.summary`.
const SUMMARY_MAX_CHARS: usize = 1024;

/// `[pagers.pagerduty]`, ready to send.
#[derive(Debug)]
pub(super) struct PagerdutyPager {
    client: reqwest::Client,
    /// `{api_url}/v2/enqueue`.
    enqueue_url: Url,
    routing_key: SecretString,
    /// `pagerduty at events.pagerduty.com`.
    far: String,
    timeout: Duration,
}

impl PagerdutyPager {
    /// The pager of `[pagers.pagerduty]` with its routing key.
    pub(super) fn build(
        settings: &PagerdutySettings,
        routing_key: &SecretString,
        client: reqwest::Client,
        timeout: Duration,
    ) -> Result<PagerdutyPager, PagerError> {
        let mut enqueue_url = parse_url("pagers.pagerduty.api_url", &settings.api_url)?;
        let far = far_side("pagerduty", &enqueue_url);
        enqueue_url
            .path_segments_mut()
            .map_err(|()| PagerError::permanent("pagers.pagerduty.api_url cannot take a path"))?
            .pop_if_empty()
            .extend(["v2", "enqueue"]);
        Ok(PagerdutyPager {
            client,
            enqueue_url,
            routing_key: routing_key.clone(),
            far,
            timeout,
        })
    }

    /// Sends one event for the incident of `msg`; the receipt is the dedup
    /// key PagerDuty answered (the one sent, unless it chose another).
    pub(super) async fn event(
        &self,
        action: PagerdutyAction,
        msg: &PageMessage,
    ) -> Result<Sent, PagerError> {
        let secrets = [&self.routing_key];
        let body = event_body(self.routing_key.expose_secret(), action, msg);
        let request = self.client.post(self.enqueue_url.clone()).json(&body);
        let answer = post(&self.far, request, self.timeout, &secrets).await?;
        let json = answer.json();
        if answer.status.is_success() {
            let dedup_key = json
                .as_ref()
                .and_then(|j| j["dedup_key"].as_str())
                .filter(|k| !k.is_empty())
                .unwrap_or(&msg.dedup_key);
            return Ok(Sent {
                receipt: scrub(dedup_key, &secrets),
            });
        }
        // {"status": "invalid event", "message": "Event object is invalid",
        //  "errors": ["Length of 'routing_key' is incorrect …"]}
        let detail = match json.as_ref() {
            Some(j) => {
                let mut said: Vec<&str> = j["message"].as_str().into_iter().collect();
                if let Some(errors) = j["errors"].as_array() {
                    said.extend(errors.iter().filter_map(|e| e.as_str()));
                }
                if said.is_empty() {
                    answer.body.clone()
                } else {
                    said.join("; ")
                }
            }
            None => answer.body.clone(),
        };
        Err(refused(&self.far, &answer, &detail, &secrets))
    }
}

/// The event PagerDuty is sent: a payload with a trigger only.
fn event_body(routing_key: &str, action: PagerdutyAction, msg: &PageMessage) -> serde_json::Value {
    let mut body = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": msg.dedup_key,
    });
    if action == PagerdutyAction::Trigger {
        body["payload"] = json!({
            "summary": crate::text::clip(&headline(msg), SUMMARY_MAX_CHARS),
            "source": "firstline",
            "severity": severity(msg.severity),
            "custom_details": {
                "incident": msg.incident,
                "text": msg.text,
            },
        });
    }
    body
}

/// PagerDuty's severity for ours.
fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::P1 => "critical",
        Severity::P2 => "error",
        Severity::P3 => "warning",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> PageMessage {
        PageMessage {
            page_id: 3,
            incident: "INC-7".into(),
            title: "checkout errors".into(),
            severity: Severity::P2,
            text: "5xx at 12%".into(),
            dedup_key: "firstline-INC-7".into(),
        }
    }

    #[test]
    fn a_trigger_carries_the_page_in_its_payload() {
        let body = event_body("key", PagerdutyAction::Trigger, &msg());
        assert_eq!(
            body,
            json!({
                "routing_key": "key",
                "event_action": "trigger",
                "dedup_key": "firstline-INC-7",
                "payload": {
                    "summary": "[P2] INC-7: checkout errors",
                    "source": "firstline",
                    "severity": "error",
                    "custom_details": {"incident": "INC-7", "text": "5xx at 12%"},
                },
            })
        );
    }

    #[test]
    fn an_acknowledge_or_a_resolve_carries_only_the_key_and_the_action() {
        for (action, name) in [
            (PagerdutyAction::Acknowledge, "acknowledge"),
            (PagerdutyAction::Resolve, "resolve"),
        ] {
            let body = event_body("key", action, &msg());
            assert_eq!(
                body,
                json!({"routing_key": "key", "event_action": name, "dedup_key": "firstline-INC-7"})
            );
        }
    }

    #[test]
    fn severities_map_to_pagerdutys_most_severe_first() {
        let mapped: Vec<&str> = Severity::ALL.into_iter().map(severity).collect();
        assert_eq!(mapped, ["critical", "error", "warning"]);
    }
}
