//! Discord's rate limits as the bot lives with them: a 429 is retried no
//! sooner than its `retry_after`, and nothing is lost or reordered. The
//! real server, serenity's client pointed at the fake Discord (through
//! `api_url`, where serenity's own limiter is off).

use std::time::Duration;

use crate::discord::{DiscordApp, discord_app};
use crate::fake_discord::{Attempt, CHANNEL_ID};
use crate::helpers::Backend;

const WAIT: Duration = Duration::from_secs(20);

impl DiscordApp {
    /// Declares INC-1: its thread, once its first message is in it.
    async fn declare_incident(&self) -> String {
        self.console("/incident declare checkout is down --sev P1")
            .await;
        assert!(
            self.discord
                .wait_for(
                    |d| d
                        .threads()
                        .first()
                        .is_some_and(|t| !d.messages_in(&t.thread).is_empty()),
                    WAIT
                )
                .await,
            "a thread with the opening: {:?}",
            self.discord.messages()
        );
        self.discord.threads()[0].thread.clone()
    }

    /// Everything posted in `thread`, in order, as one text.
    fn thread_text(&self, thread: &str) -> String {
        self.discord
            .messages_in(thread)
            .iter()
            .map(|m| m.body["content"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The severities a thread's text changed to, in the order it says so
/// (`INC-1 severity P1 → P2 by …`).
fn severity_changes(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("severity"))
        .filter_map(|l| l.split(" → ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn attempts_in(d: &DiscordApp, channel: &str) -> Vec<Attempt> {
    d.discord
        .attempts()
        .into_iter()
        .filter(|a| a.channel == channel)
        .collect()
}

#[tokio::test]
async fn a_429_is_retried_no_sooner_than_its_retry_after_and_nothing_is_lost_or_reordered() {
    let Some(d) = discord_app(Backend::Sqlite, &[]).await else {
        return;
    };
    let thread = d.declare_incident().await;
    // Discord says: not for another 1.5 s.
    d.discord.rate_limit_next_messages(1, 1.5);
    d.console("/incident sev INC-1 P2").await;
    d.console("/incident sev INC-1 P3").await;

    assert!(
        d.discord
            .wait_for(
                |_| severity_changes(&d.thread_text(&thread)).len() >= 2,
                WAIT
            )
            .await,
        "{}",
        d.thread_text(&thread)
    );
    assert_eq!(d.discord.rate_limited(), 1);
    let attempts = attempts_in(&d, &thread);
    let refused = attempts
        .iter()
        .position(|a| a.status == 429)
        .expect("the 429 is recorded");
    let retry = &attempts[refused + 1..]
        .iter()
        .find(|a| a.status == 200)
        .expect("a retry was taken");
    // The same post came back, and not before Discord allowed it.
    assert!(
        retry.content.starts_with(&attempts[refused].content),
        "{retry:?} after {:?}",
        attempts[refused]
    );
    let waited = retry.at.duration_since(attempts[refused].at);
    assert!(
        waited >= Duration::from_millis(1_500),
        "retried after {waited:?}, retry_after was 1.5 s"
    );
    // Nothing lost, in order, each once.
    assert_eq!(
        severity_changes(&d.thread_text(&thread)),
        ["P2", "P3"],
        "{}",
        d.thread_text(&thread)
    );
    // The root stayed where it was: one.
    assert_eq!(d.discord.messages_in(CHANNEL_ID).len(), 1);
}

#[tokio::test]
async fn changes_piling_up_for_one_thread_go_out_merged_at_the_channels_pace_in_order_none_lost() {
    let Some(d) = discord_app(Backend::Sqlite, &[]).await else {
        return;
    };
    let thread = d.declare_incident().await;
    let root = d.discord.messages_in(CHANNEL_ID)[0].id.clone();
    // A storm of changes for one incident, faster than Discord takes
    // messages in one channel.
    let changes = ["P2", "P3", "P2", "P3", "P2", "P3", "P2", "P3"];
    for sev in changes {
        d.console(&format!("/incident sev INC-1 {sev}")).await;
    }

    assert!(
        d.discord
            .wait_for(
                |_| severity_changes(&d.thread_text(&thread)).len() >= changes.len(),
                WAIT
            )
            .await,
        "{}",
        d.thread_text(&thread)
    );
    // Every change, in order, once.
    assert_eq!(
        severity_changes(&d.thread_text(&thread)),
        changes,
        "{}",
        d.thread_text(&thread)
    );
    // In fewer messages than changes.
    let posts = d
        .discord
        .messages_in(&thread)
        .iter()
        .filter(|m| {
            m.body["content"]
                .as_str()
                .is_some_and(|c| c.contains("severity"))
        })
        .count();
    assert!(
        posts < changes.len(),
        "merged: {posts} messages for {} changes",
        changes.len()
    );
    // Paced, so Discord never had to say no: each message in the thread
    // arrived at least a second after the one before.
    assert_eq!(d.discord.rate_limited(), 0);
    let arrivals: Vec<_> = attempts_in(&d, &thread).iter().map(|a| a.at).collect();
    for pair in arrivals.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(gap >= Duration::from_secs(1), "{gap:?} between messages");
    }
    // The root ends showing the last severity, edited in place.
    assert!(
        d.discord
            .wait_for(
                |f| f
                    .message_edits()
                    .iter()
                    .rfind(|e| e.id == root)
                    .is_some_and(|e| {
                        e.body["embeds"][0]["title"]
                            .as_str()
                            .is_some_and(|t| t.starts_with("INC-1 [P3]"))
                    }),
                WAIT
            )
            .await,
        "{:?}",
        d.discord.message_edits()
    );
    assert_eq!(d.discord.messages_in(CHANNEL_ID).len(), 1);
}
