//! The incident root as Block Kit: a header (id, severity, state), the
//! title, the facts an on-call engineer looks for first (state, severity,
//! runbook, failure modes, TTD, who acknowledged), the opening text, and the
//! buttons. Built as Slack's JSON and read back through slack-morphism's
//! block types, so a shape Slack would refuse fails here, in tests.

use serde_json::{Value, json};
use slack_morphism::prelude::*;

use super::{escape, permanent};
use crate::chat::{ChatError, RootView};
use crate::text::clip;

/// `action_id`s of the root's buttons (shared with Discord's custom ids);
/// `chat::buttons::command_line` maps them to commands.
pub use crate::chat::buttons::{ACK, PROPOSE, RERUN, RESOLVE};
/// Propose buttons shown at most (Slack allows 25 elements a block).
const PROPOSE_BUTTONS: usize = 3;

/// Slack's limits: a header's text, a section's text, a field.
const HEADER_CHARS: usize = 150;
const SECTION_CHARS: usize = 3000;
const FIELD_CHARS: usize = 2000;

fn state_icon(state: &str) -> &'static str {
    match state {
        "triggered" => "🔴",
        "acknowledged" => "🟠",
        "mitigated" => "🟡",
        "resolved" => "✅",
        _ => "⚪",
    }
}

/// The root message: blocks, and a plain-text fallback for notifications
/// and clients that show no blocks.
///
/// `own_channel` is the incident's channel of its own, if it has one: the
/// root links to it (Slack shows `<#C…>` as the channel's name).
pub fn root_content(
    root: &RootView,
    opening: &str,
    own_channel: Option<&str>,
) -> Result<SlackMessageContent, ChatError> {
    let fallback = format!(
        "{} [{}] {} — {}",
        root.id, root.severity, root.title, root.state
    );
    let field = |name: &str, value: &str| json!({"type": "mrkdwn", "text": clip(&format!("*{name}*\n{}", escape(value)), FIELD_CHARS)});
    let mut fields = vec![
        field("State", &root.state),
        field("Severity", &root.severity),
    ];
    if let Some(rb) = &root.runbook {
        fields.push(field("Runbook", rb));
    }
    if !root.failure_modes.is_empty() {
        fields.push(field("Failure modes", &root.failure_modes.join(", ")));
    }
    if let Some(ttd) = &root.ttd {
        fields.push(field("TTD", ttd));
    }
    if let Some(who) = &root.acknowledged_by {
        fields.push(field("Acknowledged by", who));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "emoji": true, "text": clip(
            &format!("{} {} · {} · {}", state_icon(&root.state), root.id, root.severity, root.state),
            HEADER_CHARS,
        )}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&format!("*{}*", escape(&root.title)), SECTION_CHARS)},
               "fields": fields}),
    ];
    if let Some(channel) = own_channel {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("Incident channel: <#{channel}>: findings, updates and commands there")}}));
    }
    if !opening.trim().is_empty() {
        blocks.push(
            json!({"type": "section", "text": {"type": "plain_text", "emoji": true,
            "text": clip(opening.trim(), SECTION_CHARS)}}),
        );
    }
    let mut buttons = Vec::new();
    if root.open {
        if root.state == "triggered" {
            buttons.push(button(ACK, "Acknowledge", &root.id, Some("primary")));
        }
        buttons.push(button(RESOLVE, "Resolve", &root.id, None));
    }
    if let Some(rb) = &root.runbook {
        buttons.push(button(
            RERUN,
            "Rerun checks",
            &format!("{rb} {}", root.id),
            None,
        ));
    }
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "block_id": "incident", "elements": buttons}));
    }
    // Proposing changes nothing: the proposal still waits for approvals.
    let proposals: Vec<Value> = if root.open {
        root.actions
            .iter()
            .take(PROPOSE_BUTTONS)
            .enumerate()
            .map(|(i, a)| {
                let label = format!("Propose {a}");
                let mut b = button(
                    PROPOSE,
                    &clip(&label, 70),
                    &format!("{a} {}", root.id),
                    None,
                );
                b["action_id"] = json!(format!("{PROPOSE}_{i}"));
                b
            })
            .collect()
    } else {
        Vec::new()
    };
    if !proposals.is_empty() {
        blocks.push(json!({"type": "actions", "block_id": "actions", "elements": proposals}));
    }
    let blocks = kit(blocks)?;
    Ok(SlackMessageContent::new()
        .with_text(escape(&fallback))
        .with_blocks(blocks))
}

/// A message shown exactly as written: a plain-text section (Slack's
/// markdown would read `_` and `*` in runbook ids and findings as
/// formatting), with the same text as the notification fallback.
pub fn literal(text: &str) -> Result<SlackMessageContent, ChatError> {
    let shown = clip(text.trim_end(), SECTION_CHARS);
    let blocks = kit(vec![json!(
        {"type": "section", "text": {"type": "plain_text", "emoji": true, "text": shown}}
    )])?;
    Ok(SlackMessageContent::new()
        .with_text(escape(&shown))
        .with_blocks(blocks))
}

/// A page in chat: a mention of `users` (member ids; the channel's
/// `@here` when empty), which notifies them, above the page's text shown
/// as written.
pub fn mention(users: &[String], text: &str) -> Result<SlackMessageContent, ChatError> {
    let who = if users.is_empty() {
        "<!here>".to_string()
    } else {
        users
            .iter()
            .map(|u| format!("<@{}>", escape(u)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let shown = clip(text.trim_end(), SECTION_CHARS);
    let blocks = kit(vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": who}}),
        json!({"type": "section", "text": {"type": "plain_text", "emoji": true, "text": shown}}),
    ])?;
    Ok(SlackMessageContent::new()
        .with_text(format!("{who} {}", escape(&shown)))
        .with_blocks(blocks))
}

/// Blocks written as Slack's JSON, read through slack-morphism's types, so
/// a shape Slack would refuse fails here.
fn kit(blocks: Vec<Value>) -> Result<Vec<SlackBlock>, ChatError> {
    serde_json::from_value(Value::Array(blocks))
        .map_err(|e| permanent(format!("a message's blocks do not read as Block Kit: {e}")))
}

fn button(action_id: &str, label: &str, value: &str, style: Option<&str>) -> Value {
    let mut b = json!({"type": "button", "action_id": action_id,
        "text": {"type": "plain_text", "text": label}, "value": value});
    if let Some(style) = style {
        b["style"] = json!(style);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(state: &str) -> RootView {
        RootView {
            id: "INC-7".into(),
            title: "Workflow <events> failing".into(),
            severity: "P1".into(),
            state: state.into(),
            runbook: Some("workflow-events-failed".into()),
            failure_modes: vec!["FM-OB-01".into()],
            ttd: Some("3m10s".into()),
            acknowledged_by: (state != "triggered").then(|| "Sam (slack:U0SAM)".into()),
            open: state != "resolved",
            opening: None,
            actions: vec!["restart_worker".into(), "lower_worker_parallelism".into()],
        }
    }

    fn json_of(c: &SlackMessageContent) -> Value {
        serde_json::to_value(c).expect("serializes")
    }

    #[test]
    fn an_open_root_shows_the_facts_and_offers_acknowledge_resolve_and_rerun() {
        let c = root_content(&root("triggered"), "2 alerts firing", None).expect("blocks");
        let v = json_of(&c);
        assert_eq!(
            v["text"],
            "INC-7 [P1] Workflow &lt;events&gt; failing — triggered"
        );
        assert_eq!(v["blocks"][0]["text"]["text"], "🔴 INC-7 · P1 · triggered");
        let fields = v["blocks"][1]["fields"].to_string();
        assert!(
            fields.contains("*Runbook*\\nworkflow-events-failed"),
            "{fields}"
        );
        assert!(fields.contains("*TTD*\\n3m10s"), "{fields}");
        assert_eq!(v["blocks"][2]["text"]["text"], "2 alerts firing");
        let ids: Vec<&str> = v["blocks"][3]["elements"]
            .as_array()
            .expect("buttons")
            .iter()
            .filter_map(|b| b["action_id"].as_str())
            .collect();
        assert_eq!(ids, [ACK, RESOLVE, RERUN]);
        assert_eq!(
            v["blocks"][3]["elements"][2]["value"],
            "workflow-events-failed INC-7"
        );
    }

    #[test]
    fn an_open_root_offers_to_propose_its_runnable_actions_and_a_resolved_one_does_not() {
        let v =
            json_of(&root_content(&root("triggered"), "2 alerts firing", None).expect("blocks"));
        let proposals = &v["blocks"][4];
        assert_eq!(proposals["block_id"], "actions", "{v}");
        assert_eq!(
            proposals["elements"][0]["text"]["text"],
            "Propose restart_worker"
        );
        assert_eq!(proposals["elements"][0]["value"], "restart_worker INC-7");
        assert_eq!(
            proposals["elements"][1]["action_id"],
            format!("{PROPOSE}_1")
        );
        let resolved = json_of(&root_content(&root("resolved"), "", None).expect("blocks"));
        assert!(!resolved.to_string().contains(PROPOSE), "{resolved}");
    }

    #[test]
    fn a_thread_message_is_shown_literally_within_slacks_section_size() {
        let long = format!("1. ✅ resend_with_backoff *ok* <b>\n{}", "x".repeat(4000));
        let v = json_of(&literal(&long).expect("blocks"));
        let shown = v["blocks"][0]["text"]["text"].as_str().expect("text");
        assert_eq!(v["blocks"][0]["text"]["type"], "plain_text");
        assert!(
            shown.starts_with("1. ✅ resend_with_backoff *ok* <b>"),
            "{shown}"
        );
        assert!(shown.chars().count() <= SECTION_CHARS);
        assert!(v["text"].as_str().expect("fallback").contains("&lt;b&gt;"));
    }

    #[test]
    fn an_acknowledged_root_names_who_and_a_resolved_one_only_reruns() {
        let acked = json_of(&root_content(&root("acknowledged"), "", None).expect("blocks"));
        assert!(
            acked["blocks"][1]["fields"]
                .to_string()
                .contains("Sam (slack:U0SAM)")
        );
        let buttons = acked["blocks"][2]["elements"].to_string();
        assert!(
            !buttons.contains(ACK) && buttons.contains(RESOLVE),
            "{buttons}"
        );
        let resolved = json_of(&root_content(&root("resolved"), "", None).expect("blocks"));
        let buttons = resolved["blocks"][2]["elements"].to_string();
        assert!(
            !buttons.contains(RESOLVE) && buttons.contains(RERUN),
            "{buttons}"
        );
    }
}
