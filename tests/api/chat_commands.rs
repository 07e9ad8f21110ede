//! Chat commands through the console platform: state changes, answers to
//! bad input, and what ends up in the thread and the timeline.

use serde_json::Value;

use crate::helpers::{fixture, spawn_app};

fn reply(body: &Value) -> &str {
    body["reply"].as_str().unwrap_or("")
}

#[tokio::test]
async fn ack_then_resolve_stamps_tta_and_ttr_and_posts_into_the_incident_thread() {
    let app = spawn_app().await;
    app.post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;

    let (s1, ack) = app.command("sam", "/incident ack INC-1").await;
    let (s2, res) = app
        .command("sam", "/incident resolve INC-1 rolled back the deploy")
        .await;

    assert_eq!((s1, s2), (200, 200), "{ack} {res}");
    assert_eq!(reply(&ack), "INC-1 acknowledged by sam");
    let (_, inc) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["incident"]["state"], "resolved");
    let detected = inc["incident"]["detected"].as_i64().unwrap();
    assert_eq!(
        inc["response_times"]["tta_ms"].as_i64().unwrap(),
        inc["incident"]["acknowledged"].as_i64().unwrap() - detected
    );
    assert_eq!(
        inc["response_times"]["ttr_ms"].as_i64().unwrap(),
        inc["incident"]["resolved"].as_i64().unwrap() - detected
    );
    let posts = app.wait_posts("INC-1", 3).await;
    assert!(
        posts[0]["thread"].is_null(),
        "the first post opens the thread"
    );
    let thread = posts[0]["message_ref"].clone();
    assert!(
        posts[1..].iter().all(|p| p["thread"] == thread),
        "later posts go into that thread"
    );
    assert!(
        posts[2]["text"]
            .as_str()
            .unwrap()
            .contains("rolled back the deploy")
    );
    let (_, tl) = app.get_json("/api/incidents/INC-1/timeline").await;
    let changes: Vec<_> = tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "state_changed")
        .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["actor"], "sam");
}

#[tokio::test]
async fn a_forbidden_transition_is_refused_with_the_current_state_and_changes_nothing() {
    let app = spawn_app().await;
    app.post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;
    app.command("sam", "/incident resolve INC-1").await;

    let (status, body) = app.command("kim", "/incident ack INC-1").await;

    assert_eq!(status, 422);
    assert_eq!(
        reply(&body),
        "INC-1 is resolved; it cannot become acknowledged"
    );
    let (_, inc) = app.get_json("/api/incidents/INC-1").await;
    assert!(inc["incident"]["acknowledged"].is_null());
}

#[tokio::test]
async fn reopening_a_resolved_incident_clears_its_resolution() {
    let app = spawn_app().await;
    app.post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;
    app.command("sam", "/incident resolve INC-1").await;

    let (status, _) = app.command("sam", "/incident reopen INC-1").await;

    assert_eq!(status, 200);
    let (_, inc) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["incident"]["state"], "triggered");
    assert!(inc["incident"]["resolved"].is_null());
}

#[tokio::test]
async fn unknown_and_malformed_commands_get_an_answer_that_says_what_to_do() {
    let app = spawn_app().await;

    let (s1, unknown) = app.command("sam", "/frobnicate now").await;
    let (s2, bad_sev) = app.command("sam", "/incident sev INC-1 P7").await;
    let (s3, missing) = app.command("sam", "/incident ack").await;
    let (s4, nothing) = app.command("sam", "/incident ack INC-99").await;

    assert_eq!((s1, s2, s3, s4), (422, 422, 422, 422));
    assert!(
        reply(&unknown).contains("unknown command /frobnicate"),
        "{unknown}"
    );
    assert!(
        reply(&bad_sev).contains("P7") && reply(&bad_sev).contains("usage"),
        "{bad_sev}"
    );
    assert!(reply(&missing).contains("which incident"), "{missing}");
    assert_eq!(reply(&nothing), "INC-99 does not exist");
}

#[tokio::test]
async fn a_command_typed_in_an_incident_thread_acts_on_that_incident() {
    let app = spawn_app().await;
    app.post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;

    let r = app
        .client
        .post(format!("{}/console/commands", app.addr))
        .json(&serde_json::json!({"user": "sam", "text": "/incident ack", "incident": "INC-1"}))
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 200);
    let (_, inc) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["incident"]["state"], "acknowledged");
}

#[tokio::test]
async fn declare_note_sev_and_followup_all_land_on_the_timeline_and_in_the_postmortem() {
    let app = spawn_app().await;

    let (s, declared) = app
        .command("kim", "/incident declare Checkout is slow --sev P2")
        .await;
    assert_eq!(s, 200, "{declared}");
    app.command("kim", "/incident note INC-1 \"p95 at 900ms since 03:10\"")
        .await;
    app.command("kim", "/incident sev INC-1 P1").await;
    app.command(
        "kim",
        "/incident followup INC-1 add a latency SLO alert --owner @kim --due 2026-12-01",
    )
    .await;
    app.command("kim", "/incident resolve INC-1").await;

    let (status, md) = app
        .get_text("/api/incidents/INC-1/postmortem?format=md")
        .await;
    assert_eq!(status, 200);
    assert!(
        md.contains("# Postmortem: INC-1 — Checkout is slow"),
        "{md}"
    );
    assert!(md.contains("| Severity | P1 |"));
    assert!(md.contains("p95 at 900ms since 03:10"));
    assert!(
        md.contains("- [ ] add a latency SLO alert — owner @kim, due 2026-12-01"),
        "{md}"
    );
    assert!(md.contains("| TTR (resolved − detected) |"));
    let (_, json) = app
        .get_json("/api/incidents/INC-1/postmortem?format=json")
        .await;
    assert_eq!(json["incident"]["severity"], "P1");
    assert!(json["response_times"]["ttr_ms"].as_i64().is_some());
    let kinds: Vec<_> = json["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "note",
            "severity_changed",
            "followup",
            "state_changed"
        ]
    );
}

#[tokio::test]
async fn a_reaction_on_a_bot_post_is_recorded_on_the_incident_timeline() {
    let app = spawn_app().await;
    app.post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;
    let posts = app.wait_posts("INC-1", 1).await;
    let message_ref = posts[0]["message_ref"].as_str().unwrap().to_string();

    let r = app
        .client
        .post(format!("{}/console/reactions", app.addr))
        .json(&serde_json::json!({"user": "sam", "message_ref": message_ref, "emoji": ":eyes:"}))
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 200);
    let (_, tl) = app.get_json("/api/incidents/INC-1/timeline").await;
    let reaction = tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "reaction")
        .cloned()
        .expect("reaction event");
    assert_eq!(reaction["actor"], "sam");
    assert_eq!(reaction["data"]["emoji"], "eyes");
}

#[tokio::test]
async fn list_and_status_answer_in_one_readable_line_per_incident() {
    let app = spawn_app().await;
    app.post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;

    let (_, list) = app.command("sam", "/incident list").await;
    let (_, status) = app.command("sam", "/incident status INC-1").await;
    let (_, help) = app.command("sam", "/help").await;

    assert!(
        reply(&list).contains("INC-1 [P1] HighErrorRate (service=account)"),
        "{list}"
    );
    assert!(reply(&status).contains("state triggered"), "{status}");
    assert!(reply(&help).contains("/incident ack"), "{help}");
}
