//! Incident channels: a P1 (with `chat.slack.incident_channels = ["P1"]`)
//! gets `#inc-<n>-<slug>`, linked from its root in the incidents channel;
//! its updates go there, responders are invited, and a command typed there
//! acts on it without an id.

use std::time::Duration;

use serde_json::Value;

use crate::fake_slack::Message;
use crate::helpers::{Backend, am_payload};
use crate::slack::{CHANNEL, slack_app_with};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_p1_gets_its_own_channel_linked_from_its_root_and_commands_there_need_no_id() {
    let Some(s) = slack_app_with(
        Backend::Sqlite,
        &[
            ("FIRSTLINE_CHAT__SLACK__INCIDENT_CHANNELS", "[\"P1\"]"),
            ("FIRSTLINE_CHAT__SLACK__RESPONDERS", "[\"U0LEAD\"]"),
        ],
    )
    .await
    else {
        return;
    };
    s.slack.add_user("U0LEAD", "lead", "Tech Lead");
    let p1 = am_payload(
        "g-db",
        &[(
            "OrdersDbDown",
            "orders-db",
            "critical",
            "db-1",
            "firing",
            "2026-12-05T00:00:00Z",
        )],
    );
    let (status, _) = s.app.post_hook("alertmanager", p1).await;
    assert_eq!(status, 200);

    // The channel is made, named after the incident, the responder invited.
    assert!(
        s.slack
            .wait_for(|st| !st.channel_messages(CHANNEL).is_empty(), WAIT)
            .await,
        "no root: {:?}",
        s.slack.calls()
    );
    let created = s.slack.calls_of("conversations.create");
    assert_eq!(created.len(), 1, "{created:?}");
    let name = created[0].body["name"].as_str().unwrap_or("").to_string();
    assert!(name.starts_with("inc-1-ordersdbdown"), "{name}");
    let own = s
        .slack
        .channel_id_by_name(&name)
        .expect("the incident channel exists");
    assert!(s.slack.members(&own).contains(&"U0LEAD".to_string()));

    // The root stays in the incidents channel and links to the channel; the
    // opening is the channel's first message.
    let root: Message = s.slack.channel_messages(CHANNEL)[0].clone();
    let blocks = root.blocks.clone().unwrap_or(Value::Null).to_string();
    assert!(blocks.contains(&format!("<#{own}>")), "{blocks}");
    let opening = s.slack.channel_messages(&own);
    assert!(
        opening
            .first()
            .is_some_and(|m| m.text.contains("OrdersDbDown")),
        "{opening:?}"
    );

    // `/incident ack` typed in the incident channel, no id: acts on INC-1
    // (once its thread is recorded, a moment after the root is out).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, inc) = s.app.get_json("/api/incidents/INC-1").await;
        if inc["incident"]["chat_thread"]
            .as_str()
            .is_some_and(|t| t.ends_with(&format!("@{own}")))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{inc}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, answer) = s.command_in(&own, "/incident", "ack").await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["text"]
            .as_str()
            .unwrap_or("")
            .contains("INC-1 acknowledged by sam (slack:U0SAM)"),
        "{answer}"
    );
    // The update is posted in the incident channel (not a thread in the
    // incidents channel), the root shows it, and Sam is invited.
    assert!(
        s.slack
            .wait_for(
                |st| st
                    .channel_messages(&own)
                    .iter()
                    .any(|m| m.text.contains("acknowledged")),
                WAIT
            )
            .await,
        "{:?}",
        s.slack.channel_messages(&own)
    );
    assert!(
        s.slack
            .wait_for(
                |st| st.message(CHANNEL, &root.ts).is_some_and(|m| m.updates > 0
                    && m.blocks
                        .clone()
                        .unwrap_or(Value::Null)
                        .to_string()
                        .contains("acknowledged")),
                WAIT
            )
            .await
    );
    assert!(
        s.slack
            .wait_for(|st| st.members(&own).contains(&"U0SAM".to_string()), WAIT)
            .await,
        "whoever acknowledges joins the channel"
    );
    assert!(
        s.slack
            .channel_messages(CHANNEL)
            .iter()
            .all(|m| m.thread_ts.is_none()),
        "nothing of INC-1 is threaded in the incidents channel"
    );

    // A P2 stays a thread in the incidents channel; no second channel.
    let p2 = am_payload(
        "g-slow",
        &[(
            "CheckoutSlow",
            "checkout",
            "warning",
            "web-1",
            "firing",
            "2026-12-05T00:00:00Z",
        )],
    );
    let (status, _) = s.app.post_hook("alertmanager", p2).await;
    assert_eq!(status, 200);
    assert!(
        s.slack
            .wait_for(|st| st.channel_messages(CHANNEL).len() == 2, WAIT)
            .await
    );
    assert_eq!(s.slack.count("conversations.create"), 1);
    // In the incidents channel a command still needs its id.
    let (_, answer) = s.command("/incident", "ack").await;
    assert!(
        !answer["text"]
            .as_str()
            .unwrap_or("")
            .contains("acknowledged by"),
        "{answer}"
    );
}
