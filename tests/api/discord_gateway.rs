//! Reactions on Discord, end to end: serenity's real gateway client
//! connects to the fake gateway (found through `GET /gateway` on the fake
//! REST API), and reactions dispatched there on the bot's posts reach the
//! ledger as Slack's and the console's do. The approval is the one a user
//! notices: a `/action propose` by one Discord user, a ✅ by another, the
//! loopback admin endpoint called once, and what the thread says.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use crate::actions::Service;
use crate::discord::{DiscordApp, WAIT, discord_app_with_file};
use crate::fake_discord::{BOT_TOKEN, CHANNEL_ID, FakeDiscord, Sent, command, member};
use crate::fake_discord_gateway::BOT_USER_ID;
use crate::helpers::{Backend, am_payload};
use crate::slack_actions::fixers_runbook;

const SAM: &str = "80351110224678912";
const ANN: &str = "80351110224678913";
const BOB: &str = "80351110224678914";
const CAROL: &str = "80351110224678915";
/// Discord's gateway intent bit for GUILD_MESSAGE_REACTIONS (1 << 10).
const GUILD_MESSAGE_REACTIONS: u64 = 1 << 10;

struct Setup {
    d: DiscordApp,
    svc: Service,
    _dir: tempfile::TempDir,
}

/// The app on `backend` as a Discord application with the runbook whose
/// `restart` POSTs to a counting loopback admin endpoint; the fixers are
/// Sam and Ann on Discord. Returns once the gateway client has identified.
async fn setup(backend: Backend) -> Option<Setup> {
    setup_with(backend, "").await
}

/// [`setup`] with more `[approvals]` settings.
async fn setup_with(backend: Backend, approvals: &str) -> Option<Setup> {
    setup_configured(backend, approvals, false).await
}

/// [`setup_with`], running the runbook's checks on each new incident when
/// `run_on_alert`.
async fn setup_configured(backend: Backend, approvals: &str, run_on_alert: bool) -> Option<Setup> {
    let fixers = [format!("discord:{SAM}"), format!("discord:{ANN}")];
    let fixers: Vec<&str> = fixers.iter().map(String::as_str).collect();
    let (svc, dir, toml) = fixers_runbook(&fixers, approvals).await;
    let toml = toml.replace(
        "run_on_alert = false",
        &format!("run_on_alert = {run_on_alert}"),
    );
    let d = discord_app_with_file(backend, Some(&toml), &[]).await?;
    assert!(
        d.discord.gateway().wait_connected(WAIT).await,
        "serenity's gateway client never identified"
    );
    Some(Setup { d, svc, _dir: dir })
}

impl Setup {
    /// An alert of `severity` opens INC-1; once its root is posted.
    async fn open(&self, severity: &str) {
        let body = am_payload(
            "g-discord",
            &[(
                "SvcDown",
                "svc",
                severity,
                "svc:80",
                "firing",
                "2026-12-05T00:00:00Z",
            )],
        );
        let (code, _) = self.d.app.post_hook("alertmanager", body).await;
        assert_eq!(code, 200);
        self.d.app.wait_posts("INC-1", 1).await;
    }

    /// Sam runs `/action propose restart INC-1` (a signed interaction);
    /// the proposal message as the fake Discord holds it.
    async fn propose(&self) -> Sent {
        let (i, _) = command(
            "action",
            json!([{"name": "propose", "type": 1, "options": [
                {"name": "action", "type": 3, "value": "restart"},
                {"name": "inc", "type": 3, "value": "INC-1"},
            ]}]),
            member(SAM, "sam", Some("Sam"), None),
        );
        let (status, answer) = self.d.send(&i).await;
        assert_eq!(status, 200, "{answer}");
        assert!(
            answer.to_string().contains("proposed #1 restart for INC-1"),
            "{answer}"
        );
        let proposal = self.wait_message("Proposal #1").await;
        // A reaction counts once the post is recorded as the bot's (a
        // moment after Discord took it; a person is never that quick).
        let posted = format!("{}/{}", proposal.channel, proposal.id);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (_, posts) = self.d.app.get_json("/api/incidents/INC-1/posts").await;
            if posts.to_string().contains(&posted) {
                break proposal;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the proposal {posted} is not recorded: {posts:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The first message whose text contains `needle`, once there is one.
    async fn wait_message(&self, needle: &str) -> Sent {
        let found = |d: &FakeDiscord| d.messages().into_iter().find(|m| text(m).contains(needle));
        assert!(
            self.d.discord.wait_for(|d| found(d).is_some(), WAIT).await,
            "no message contains {needle:?}: {:#?}",
            self.d
                .discord
                .messages()
                .iter()
                .map(text)
                .collect::<Vec<_>>()
        );
        found(&self.d.discord).expect("found above")
    }

    /// Waits until `n` messages contain `needle`.
    async fn wait_count(&self, needle: &str, n: usize) {
        let counted = |d: &FakeDiscord| {
            d.messages()
                .iter()
                .filter(|m| text(m).contains(needle))
                .count()
        };
        assert!(
            self.d.discord.wait_for(|d| counted(d) >= n, WAIT).await,
            "fewer than {n} messages contain {needle:?}: {:#?}",
            self.d
                .discord
                .messages()
                .iter()
                .map(text)
                .collect::<Vec<_>>()
        );
    }

    /// `user` adds `emoji` (the character) on `message`.
    fn react_with(&self, message: &Sent, user: &str, name: &str, emoji: &str) {
        self.d
            .discord
            .gateway()
            .react(false, &message.channel, &message.id, user, name, emoji)
            .expect("a gateway connection is open");
    }

    /// Waits until INC-1's timeline has an event whose text contains
    /// `needle`.
    async fn wait_timeline(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (_, tl) = self.d.app.get_json("/api/incidents/INC-1/timeline").await;
            if tl["events"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|e| e["text"].as_str().is_some_and(|t| t.contains(needle)))
            }) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no timeline event contains {needle:?}: {tl:#}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// How many messages contain `needle`.
    fn count(&self, needle: &str) -> usize {
        self.d
            .discord
            .messages()
            .iter()
            .filter(|m| text(m).contains(needle))
            .count()
    }

    /// `user` adds (or takes off) ✅ on `message` through the gateway:
    /// the dispatch's sequence number.
    fn react(&self, removed: bool, message: &Sent, user: &str, name: &str) -> u64 {
        self.d
            .discord
            .gateway()
            .react(removed, &message.channel, &message.id, user, name, "✅")
            .expect("a gateway connection is open")
    }
}

fn text(m: &Sent) -> String {
    m.body["content"].as_str().unwrap_or_default().to_string()
}

/// A pause in which nothing must happen (a call that would come, comes
/// well within it).
async fn quiet() {
    tokio::time::sleep(Duration::from_millis(600)).await;
}

#[tokio::test]
async fn the_gateway_identifies_with_the_bot_token_and_only_the_reactions_intent() {
    let Some(s) = setup(Backend::Sqlite).await else {
        return;
    };
    let identify = &s.d.discord.gateway().identifies()[0];
    // As serenity sends it.
    assert_eq!(identify["token"], format!("Bot {BOT_TOKEN}"), "{identify}");
    assert_eq!(identify["intents"], GUILD_MESSAGE_REACTIONS, "{identify}");
    assert_eq!(identify["shard"], json!([0, 1]), "{identify}");
}

async fn a_fixers_reaction_runs_the_proposal_once(backend: Backend) {
    let Some(s) = setup(backend).await else {
        return;
    };
    s.open("warning").await;
    let proposal = s.propose().await;
    assert!(
        text(&proposal).contains(&format!("fixers (discord:{SAM}, discord:{ANN})")),
        "{proposal:?}"
    );
    quiet().await;
    assert_eq!(
        s.svc.restarts.load(Ordering::SeqCst),
        0,
        "nothing runs unapproved"
    );

    // Ann reacts ✅ on the proposal message.
    let seq = s.react(false, &proposal, ANN, "ann");
    s.wait_message(&format!(
        "#1 restart approved by ann (discord:{ANN}) (proposed by Sam (discord:{SAM})): running it now"
    ))
    .await;
    let done = s.wait_message("#1 restart try 1/1: done").await;
    assert!(text(&done).contains("HTTP 202"), "{done:?}");
    assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 1);

    // Discord delivers the same dispatch again: applied once, so the
    // thread stays as it was and nothing runs again.
    let before = s.d.discord.messages().len();
    assert!(s.d.discord.gateway().deliver_again(seq));
    quiet().await;
    assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 1);
    assert_eq!(s.count("try 1/1: done"), 1);
    assert_eq!(
        s.d.discord.messages().len(),
        before,
        "{:#?}",
        s.d.discord.messages()
    );

    // The audit and the timeline name the Discord users.
    let (_, body) = s.d.app.get_json("/api/incidents/INC-1/actions").await;
    let p = &body["actions"][0];
    assert_eq!(p["proposer_identity"], format!("discord:{SAM}"), "{p}");
    assert_eq!(p["votes"][0]["identity"], format!("discord:{ANN}"), "{p}");
    assert_eq!(p["votes"].as_array().map(Vec::len), Some(1), "{p}");
    let (_, tl) = s.d.app.get_json("/api/incidents/INC-1/timeline").await;
    let reacted = format!(
        "ann (discord:{ANN}) reacted :white_check_mark: to message {}/{}",
        proposal.channel, proposal.id
    );
    let events = tl["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        events
            .iter()
            .filter(|e| e["text"].as_str() == Some(reacted.as_str()))
            .count(),
        1,
        "{tl:#}"
    );
}

#[tokio::test]
async fn a_discord_fixers_reaction_on_the_proposal_runs_it_once() {
    a_fixers_reaction_runs_the_proposal_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_discord_fixers_reaction_on_the_proposal_runs_it_once_on_postgres() {
    a_fixers_reaction_runs_the_proposal_once(Backend::Postgres).await;
}

#[tokio::test]
async fn a_reaction_without_the_role_or_by_the_bot_does_not_count() {
    let Some(s) = setup(Backend::Sqlite).await else {
        return;
    };
    s.open("warning").await;
    let proposal = s.propose().await;
    s.react(false, &proposal, BOB, "bob");
    let why = s.wait_message("does not count").await;
    assert!(
        text(&why).contains(&format!(
            "bob (discord:{BOB})'s ✅ on #1 restart does not count: discord:{BOB} holds none of the roles"
        )),
        "{why:?}"
    );
    // The bot's own reaction is not a vote, nor anything else.
    s.react(false, &proposal, BOT_USER_ID, "firstline");
    quiet().await;
    assert_eq!(s.count("does not count"), 1);
    assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 0);
    let (_, body) = s.d.app.get_json("/api/incidents/INC-1/actions").await;
    assert_eq!(body["actions"][0]["state"], "proposed", "{body}");

    // A removal carries no member: the name comes from Discord's API.
    s.d.discord.add_user(CAROL, "carol", Some("Carol"));
    s.react(true, &proposal, CAROL, "carol");
    let removed = format!("Carol (discord:{CAROL}) removed their :white_check_mark:");
    let mut seen = false;
    for _ in 0..200 {
        let (_, tl) = s.d.app.get_json("/api/incidents/INC-1/timeline").await;
        if tl.to_string().contains(&removed) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seen, "the timeline never said {removed:?}");
}

#[tokio::test]
async fn taking_a_reaction_off_withdraws_it_and_adding_it_again_counts_again() {
    let Some(s) = setup_with(Backend::Sqlite, "quorum = 2").await else {
        return;
    };
    s.open("warning").await;
    let proposal = s.propose().await;
    // Sam approves, then takes his ✅ off before anyone else approves.
    s.react(false, &proposal, SAM, "sam");
    s.wait_message("1 of 2 approvals; waiting for 1 more").await;
    s.react(true, &proposal, SAM, "sam");
    s.wait_message("withdrew their approval of #1 restart (0 of 2 approvals)")
        .await;
    // Ann approves: one of two again, not two.
    s.react(false, &proposal, ANN, "ann");
    s.wait_count("approved #1 restart: 1 of 2", 2).await;
    quiet().await;
    assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 0);
    // Sam adds it again: that is the second approval, and it runs.
    s.react(false, &proposal, SAM, "sam");
    s.wait_message("#1 restart try 1/1: done").await;
    assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn after_discord_asks_for_a_reconnect_the_session_resumes_and_reactions_count() {
    let Some(s) = setup(Backend::Sqlite).await else {
        return;
    };
    s.open("warning").await;
    let proposal = s.propose().await;
    let gateway = s.d.discord.gateway();
    assert!(gateway.ask_reconnect());
    assert!(
        gateway.wait_for(|g| !g.resumes().is_empty(), WAIT).await,
        "serenity did not resume after RECONNECT"
    );
    let resume = &gateway.resumes()[0];
    assert_eq!(resume["session_id"], "fake-session-1", "{resume}");
    assert_eq!(resume["token"], format!("Bot {BOT_TOKEN}"), "{resume}");
    assert_eq!(
        gateway.identifies().len(),
        1,
        "resumed, not identified again"
    );

    s.react(false, &proposal, ANN, "ann");
    s.wait_message("#1 restart try 1/1: done").await;
    assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 1);
}

/// The flow a team runs on Discord, start to end: an alert opens an
/// incident, its embed and the runbook's findings arrive, `/incident ack`
/// edits the embed, a reaction on the root reaches the timeline, the
/// incident is resolved, and the postmortem names the Discord users.
async fn the_whole_flow(backend: Backend) {
    let Some(s) = setup_configured(backend, "", true).await else {
        return;
    };
    s.open("warning").await;
    let root =
        s.d.discord
            .messages_in(CHANNEL_ID)
            .into_iter()
            .next()
            .expect("the root");
    assert!(
        root.body["embeds"][0]["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("INC-1 [P2]")),
        "{root:?}"
    );
    // The runbook's findings, in the thread started from the root.
    let findings = s.wait_message("GET /health").await;
    let thread = s.d.discord.threads()[0].thread.clone();
    assert_eq!(findings.channel, thread, "{findings:?}");

    // Sam acknowledges through a slash command: the embed is edited.
    let (i, _) = command(
        "incident",
        json!([{"name": "ack", "type": 1, "options": [
            {"name": "id", "type": 3, "value": "INC-1"}]}]),
        member(SAM, "sam", Some("Sam"), None),
    );
    let (status, answer) = s.d.send(&i).await;
    assert_eq!(status, 200, "{answer}");
    let acked = |f: &FakeDiscord| {
        f.message_edits().iter().any(|e| {
            e.id == root.id
                && e.body["embeds"][0]["fields"]
                    .to_string()
                    .contains(&format!("Sam (discord:{SAM})"))
        })
    };
    assert!(
        s.d.discord.wait_for(acked, WAIT).await,
        "{:#?}",
        s.d.discord.message_edits()
    );

    // Ann reacts 👀 on the root: the timeline has it, by her.
    s.react_with(&root, ANN, "ann", "👀");
    let reacted = format!(
        "ann (discord:{ANN}) reacted :eyes: to message {}/{}",
        root.channel, root.id
    );
    s.wait_timeline(&reacted).await;

    // Resolved; the postmortem names both Discord users.
    let (i, _) = command(
        "incident",
        json!([{"name": "resolve", "type": 1, "options": [
            {"name": "id", "type": 3, "value": "INC-1"}]}]),
        member(SAM, "sam", Some("Sam"), None),
    );
    let (status, answer) = s.d.send(&i).await;
    assert_eq!(status, 200, "{answer}");
    s.wait_timeline("resolved").await;
    let r =
        s.d.app
            .client
            .get(format!(
                "{}/api/incidents/INC-1/postmortem?format=md",
                s.d.app.addr
            ))
            .send()
            .await
            .expect("export");
    assert_eq!(r.status().as_u16(), 200);
    let md = r.text().await.unwrap_or_default();
    assert!(md.contains(&format!("Sam (discord:{SAM})")), "{md}");
    assert!(md.contains(&format!("ann (discord:{ANN})")), "{md}");
}

#[tokio::test]
async fn the_whole_flow_runs_in_a_discord_channel() {
    the_whole_flow(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_whole_flow_runs_in_a_discord_channel_on_postgres() {
    the_whole_flow(Backend::Postgres).await;
}

/// With no Interactions Endpoint URL set, Discord sends commands over the
/// gateway; they are answered as over HTTP, through the interaction
/// response callback.
#[tokio::test]
async fn commands_over_the_gateway_are_answered_as_over_http() {
    let Some(s) = setup(Backend::Sqlite).await else {
        return;
    };
    let sam = member(SAM, "sam", Some("Sam"), None);
    let (i, token) = command(
        "incident",
        json!([{"name": "declare", "type": 1, "options": [
            {"name": "title", "type": 3, "value": "checkout is down"},
            {"name": "sev", "type": 3, "value": "P2"}]}]),
        sam.clone(),
    );
    assert!(s.d.discord.gateway().interaction(&i));
    assert!(
        s.d.discord
            .wait_for(|d| !d.callbacks(&token).is_empty(), WAIT)
            .await,
        "no interaction response"
    );
    let answer = &s.d.discord.callbacks(&token)[0];
    // CHANNEL_MESSAGE_WITH_SOURCE, for the caller only, mentioning nobody.
    assert_eq!(answer["type"], 4, "{answer}");
    assert_eq!(answer["data"]["flags"], 64, "{answer}");
    let said = answer["data"]["content"].as_str().unwrap_or_default();
    assert!(said.contains("INC-1"), "{answer}");
    let (_, inc) = s.d.app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["incident"]["title"], "checkout is down", "{inc}");
    s.wait_timeline(&format!("Sam (discord:{SAM})")).await;

    // The same words as the console's for the same command.
    let (i, token) = command(
        "incident",
        json!([{"name": "ack", "type": 1, "options": [
            {"name": "id", "type": 3, "value": "INC-7"}]}]),
        sam,
    );
    assert!(s.d.discord.gateway().interaction(&i));
    assert!(
        s.d.discord
            .wait_for(|d| !d.callbacks(&token).is_empty(), WAIT)
            .await
    );
    let answer = &s.d.discord.callbacks(&token)[0];
    let (_, console) = s.d.app.command("Sam", "/incident ack INC-7").await;
    let console = console["reply"].as_str().unwrap_or_default().to_string();
    let said = answer["data"]["content"].as_str().unwrap_or_default();
    assert!(!console.is_empty());
    assert!(said.contains(&console), "{said:?} vs {console:?}");
}

/// A token Discord stops accepting (reset in the Developer Portal): the
/// gateway refuses it with close code 4004. firstline stops asking (no
/// reconnect storm against Discord) and goes on serving what it can.
#[tokio::test]
async fn a_refused_token_stops_the_gateway_and_commands_over_http_still_work() {
    let Some(s) = setup(Backend::Sqlite).await else {
        return;
    };
    let gateway = s.d.discord.gateway();
    gateway.refuse_identify(4004);
    assert!(gateway.invalidate_session());
    assert!(
        gateway.wait_for(|g| g.identifies().len() == 2, WAIT).await,
        "serenity did not identify again after INVALID_SESSION"
    );
    // serenity starts a shard at most once per 5 s (its queue's pace): a
    // retry would have come within 6.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        gateway.identifies().len(),
        2,
        "it kept trying a refused token"
    );
    let (i, _) = command(
        "incident",
        json!([{"name": "declare", "type": 1, "options": [
            {"name": "title", "type": 3, "value": "checkout is down"}]}]),
        member(SAM, "sam", Some("Sam"), None),
    );
    let (status, answer) = s.d.send(&i).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.to_string().contains("INC-1"), "{answer}");
}
