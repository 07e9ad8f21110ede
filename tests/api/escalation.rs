//! Escalation end to end on the console: a declared incident starts its
//! severity's policy, steps page on time through the durable engine, an
//! acknowledgement stops the chain, and a policy nobody answers runs out.

use std::time::Duration;

use crate::helpers::{TestApp, spawn_app_with_file};

/// ann is paged first, then bob and the channel; each step waits
/// `ack_within` (seconds) for an acknowledgement.
fn config(ack_within_s: u32, repeat: u32) -> String {
    format!(
        r#"
[contacts.ann]
name = "Ann"
timezone = "Europe/Paris"
availability = "24/7"
console = "ann"
page_via = ["chat_mention"]

[contacts.bob]
timezone = "America/New_York"
availability = "24/7"
console = "bob"
page_via = ["chat_dm"]

[escalation.P1]
steps = [
  {{ page = ["ann"], ack_within = "{ack_within_s}s" }},
  {{ page = ["bob", "channel"], ack_within = "{ack_within_s}s" }},
]
repeat = {repeat}
"#
    )
}

/// The incident's timeline events of `kind`, as text.
async fn events(app: &TestApp, inc: &str, kind: &str) -> Vec<String> {
    let (_, body) = app
        .get_json(&format!("/api/incidents/{inc}/timeline?limit=500"))
        .await;
    body["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| e["text"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Waits until `inc` has an event of `kind` containing `needle`; panics
/// after `secs` with the timeline.
async fn wait_event(app: &TestApp, inc: &str, kind: &str, needle: &str, secs: u64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let found = events(app, inc, kind).await;
        if let Some(e) = found.iter().find(|t| t.contains(needle)) {
            return e.clone();
        }
        if tokio::time::Instant::now() > deadline {
            let (_, all) = app
                .get_json(&format!("/api/incidents/{inc}/timeline?limit=500"))
                .await;
            panic!("{inc}: no {kind} event with {needle:?} after {secs} s: {all:#}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn declare(app: &TestApp) -> String {
    let (status, body) = app
        .command("sam", "/incident declare checkout is down --sev P1")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    let ids = app.incident_ids().await;
    ids.last().cloned().expect("an incident")
}

#[tokio::test]
async fn an_unacknowledged_p1_pages_each_step_on_time_and_then_runs_out() {
    let app = spawn_app_with_file(&config(1, 0), &[]).await;

    let inc = declare(&app).await;

    let step1 = wait_event(&app, &inc, "escalation", "step 1/2 of P1", 5).await;
    assert!(step1.contains("paging ann (chat_mention)"), "{step1}");
    let sent = wait_event(&app, &inc, "page", "paged ann via chat_mention", 5).await;
    assert!(sent.contains(" ms "), "{sent}");
    let step2 = wait_event(&app, &inc, "escalation", "step 2/2 of P1", 5).await;
    assert!(
        step2.contains("paging bob (chat_dm), the channel"),
        "{step2}"
    );
    wait_event(&app, &inc, "page", "paged bob via chat_dm", 5).await;
    wait_event(&app, &inc, "page", "paged the channel via chat_mention", 5).await;
    let out = wait_event(&app, &inc, "escalation", "escalation exhausted", 5).await;
    assert!(out.contains("nobody acknowledged"), "{out}");

    // The thread shows ann's mention, the channel's @here and the alarm.
    let posts = app.wait_posts(&inc, 4).await;
    let texts: Vec<&str> = posts.iter().filter_map(|p| p["text"].as_str()).collect();
    assert!(
        texts.iter().any(|t| t.starts_with("@ann 🔴 P1")
            && t.contains("acknowledge within 1.0s with /incident ack INC-1")),
        "{texts:#?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with("@here ")
            && t.contains("acknowledge with /incident ack INC-1: this is the policy's last step")),
        "{texts:#?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("is still unacknowledged") && t.contains("/incident ack")),
        "{texts:#?}"
    );
    // Each step paged once: no repeats of a step.
    let steps = events(&app, &inc, "escalation").await;
    assert_eq!(
        steps.iter().filter(|t| t.contains("step 1/2")).count(),
        1,
        "{steps:#?}"
    );
}

#[tokio::test]
async fn an_acknowledgement_stops_the_chain_before_the_next_step() {
    let app = spawn_app_with_file(&config(2, 2), &[]).await;
    let inc = declare(&app).await;
    wait_event(&app, &inc, "page", "paged ann via chat_mention", 5).await;
    let (_, body) = app.command("sam", &format!("/incident status {inc}")).await;
    let status = body["reply"].as_str().unwrap_or("");
    assert!(
        status.contains("\nescalation: step 2/2 of P1 pages at "),
        "{status}"
    );

    let (status, body) = app.command("ann", &format!("/incident ack {inc}")).await;
    assert_eq!(body["ok"], true, "{status} {body}");

    let stopped = wait_event(&app, &inc, "escalation", "escalation stopped", 5).await;
    assert!(
        stopped.contains("after step 1/2 of P1 (round 1/3): acknowledged by ann"),
        "{stopped}"
    );
    let (_, body) = app.command("sam", &format!("/incident status {inc}")).await;
    let status = body["reply"].as_str().unwrap_or("");
    assert!(
        status.ends_with("\nescalation stopped: acknowledged by ann"),
        "{status}"
    );
    // Well past step 2's deadline: nobody else was paged.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let steps = events(&app, &inc, "escalation").await;
    assert!(
        !steps.iter().any(|t| t.contains("step 2/2")),
        "a step fired after the ack: {steps:#?}"
    );
    let pages = events(&app, &inc, "page").await;
    assert!(
        !pages.iter().any(|t| t.contains("bob")),
        "bob was paged after the ack: {pages:#?}"
    );
}

#[tokio::test]
async fn a_raised_severity_starts_paging_and_a_p3_without_a_policy_pages_nobody() {
    let app = spawn_app_with_file(&config(5, 0), &[]).await;
    let (_, body) = app
        .command("sam", "/incident declare slow admin page --sev P3")
        .await;
    assert_eq!(body["ok"], true, "{body}");
    let inc = app.incident_ids().await.last().cloned().expect("incident");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(events(&app, &inc, "escalation").await.is_empty());

    let (_, body) = app.command("sam", &format!("/incident sev {inc} P1")).await;
    assert_eq!(body["ok"], true, "{body}");

    wait_event(
        &app,
        &inc,
        "escalation",
        "escalation started: the P1 policy",
        5,
    )
    .await;
    wait_event(&app, &inc, "page", "paged ann via chat_mention", 5).await;
}

#[tokio::test]
async fn page_by_hand_reaches_a_rotations_on_call_member_even_after_an_ack() {
    let app = spawn_app_with_file(
        &format!(
            "{}\n[rotations.primary]\nmembers = [\"bob\"]\nhandoff = \"daily 09:00 Europe/Paris\"\n",
            config(30, 0)
        ),
        &[],
    )
    .await;
    let inc = declare(&app).await;
    let (_, body) = app.command("ann", &format!("/incident ack {inc}")).await;
    assert_eq!(body["ok"], true, "{body}");

    let (_, body) = app
        .command(
            "ann",
            &format!("/page primary {inc} the disk is full, need a second pair of hands"),
        )
        .await;

    assert_eq!(body["ok"], true, "{body}");
    assert!(
        body["reply"].as_str().unwrap_or("").contains("paging bob"),
        "{body}"
    );
    let asked = wait_event(&app, &inc, "page", "ann paged bob by hand", 5).await;
    assert!(asked.contains("the disk is full"), "{asked}");
    let sent = wait_event(&app, &inc, "page", "paged bob via chat_dm", 5).await;
    assert!(sent.contains(" ms "), "{sent}");
}

/// A secret reference to a file holding `value` (tests never set the
/// process environment, which every test shares).
fn secret_file(dir: &std::path::Path, name: &str, value: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value).expect("write a secret file");
    format!("{{ file = {:?} }}", path.display().to_string())
}

#[tokio::test]
async fn a_page_that_fails_on_one_channel_goes_out_on_the_contacts_next() {
    use crate::fake_pagers::{Failure, SmtpSink, WebhookReceiver};
    let secrets = tempfile::tempdir().expect("temp dir");
    let hook = WebhookReceiver::start("hook-secret").await;
    hook.fail_next(Failure::status(500));
    let smtp = SmtpSink::start().await;
    let toml = format!(
        r#"
[contacts.ann]
timezone = "UTC"
availability = "24/7"
email = "ann@example.com"
page_via = ["webhook", "email"]

[escalation.P1]
steps = [{{ page = ["ann"], ack_within = "60s" }}]

[pagers.webhook]
url = "{hook_url}"
hmac_secret = {hmac}

[pagers.email]
smtp_url = {smtp_url}
from = "firstline@example.com"
"#,
        hook_url = hook.hook_url("t0ken"),
        hmac = secret_file(secrets.path(), "hmac", "hook-secret"),
        smtp_url = secret_file(secrets.path(), "smtp", &smtp.url(None)),
    );
    let app = spawn_app_with_file(&toml, &[]).await;

    let inc = declare(&app).await;

    let failed = wait_event(&app, &inc, "page", "page to ann via webhook failed", 10).await;
    assert!(failed.contains("500"), "{failed}");
    assert!(failed.ends_with("; trying email"), "{failed}");
    assert!(
        !failed.contains("t0ken"),
        "a secret reached the timeline: {failed}"
    );
    let sent = wait_event(&app, &inc, "page", "paged ann via email", 10).await;
    assert!(sent.contains(" ms "), "{sent}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(
        mails[0].body().contains(&format!("{inc} needs you")),
        "{}",
        mails[0].body()
    );
    assert!(hook.accepted().is_empty());
    // Each try is counted by channel and outcome (the counters are the
    // process's, shared by the tests: only their presence is checked).
    let (_, metrics) = app.get_text("/metrics").await;
    for line in [
        "firstline_pages_total{channel=\"webhook\",outcome=\"failed\"}",
        "firstline_pages_total{channel=\"email\",outcome=\"sent\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing from /metrics");
    }
}

#[tokio::test]
async fn pagerduty_is_triggered_by_a_step_then_acknowledged_and_resolved_with_the_incident() {
    use crate::fake_pagers::FakePagerduty;
    let secrets = tempfile::tempdir().expect("temp dir");
    let pd = FakePagerduty::start("R0UTING").await;
    let toml = format!(
        r#"
[contacts.ann]
timezone = "UTC"
availability = "24/7"
page_via = ["pagerduty"]

[escalation.P1]
steps = [{{ page = ["ann"], ack_within = "60s" }}]

[pagers.pagerduty]
routing_key = {key}
api_url = "{url}"
"#,
        key = secret_file(secrets.path(), "pd", "R0UTING"),
        url = pd.url,
    );
    let app = spawn_app_with_file(&toml, &[]).await;
    let inc = declare(&app).await;
    wait_event(&app, &inc, "page", "paged ann via pagerduty", 10).await;

    let (_, body) = app.command("ann", &format!("/incident ack {inc}")).await;
    assert_eq!(body["ok"], true, "{body}");
    wait_event(&app, &inc, "page", "PagerDuty acknowledge sent", 10).await;
    let (_, body) = app
        .command("ann", &format!("/incident resolve {inc} fixed"))
        .await;
    assert_eq!(body["ok"], true, "{body}");
    wait_event(&app, &inc, "page", "PagerDuty resolve sent", 10).await;

    let events = pd.accepted();
    let actions: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event_action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["trigger", "acknowledge", "resolve"],
        "{events:#?}"
    );
    let key = format!("firstline-{inc}");
    assert!(
        events.iter().all(|e| e["dedup_key"] == key.as_str()),
        "{events:#?}"
    );
}

/// Every event of the incident, in commit order: (kind, text).
async fn all_events(app: &TestApp, inc: &str) -> Vec<(String, String)> {
    let (_, body) = app
        .get_json(&format!("/api/incidents/{inc}/timeline?limit=1000"))
        .await;
    body["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("").to_string(),
                e["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Acknowledgements racing step 2's deadline, many at once: whichever the
/// ledger decides first wins, and nothing is paged for a step decided
/// after the ack.
async fn ack_races_the_deadline(backend: crate::helpers::Backend) {
    const RACES: usize = 12;
    let Some(app) = crate::helpers::spawn_app_with_file_on(backend, &config(1, 0), &[]).await
    else {
        return;
    };
    let mut ids = Vec::new();
    for n in 0..RACES {
        let (_, body) = app
            .command("sam", &format!("/incident declare race {n} --sev P1"))
            .await;
        assert_eq!(body["ok"], true, "{body}");
        ids.push(app.incident_ids().await.last().cloned().expect("incident"));
    }
    let mut dues = Vec::new();
    for inc in &ids {
        wait_event(&app, inc, "escalation", "step 1/2 of P1", 5).await;
        let (_, body) = app
            .get_json(&format!("/api/incidents/{inc}/timeline?limit=100"))
            .await;
        let due = body["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|e| {
                (e["data"]["k"] == 0)
                    .then(|| e["data"]["due_ms"].as_i64())
                    .flatten()
            })
            .expect("step 1 records step 2's due time");
        dues.push(due);
    }
    // Acks spread from 150 ms before step 2 is due to 150 ms after.
    let mut acks = tokio::task::JoinSet::new();
    for (n, (inc, due)) in ids.iter().zip(dues).enumerate() {
        let inc = inc.clone();
        let client = app.client.clone();
        let addr = app.addr.clone();
        let at = due - 150 + (300 * n as i64) / (RACES as i64 - 1);
        acks.spawn(async move {
            let wait = at - chrono::Utc::now().timestamp_millis();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
            let r = client
                .post(format!("{addr}/console/commands"))
                .json(&serde_json::json!({"user": "ann", "text": format!("/incident ack {inc}")}))
                .send()
                .await
                .expect("ack");
            let body: serde_json::Value = r.json().await.expect("json");
            assert_eq!(body["ok"], true, "{body}");
        });
    }
    while acks.join_next().await.is_some() {}
    // Past every deadline and retry.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (mut before, mut after) = (0, 0);
    for inc in &ids {
        let events = all_events(&app, inc).await;
        let stop = events
            .iter()
            .position(|(k, t)| k == "escalation" && t.starts_with("escalation stopped"))
            .unwrap_or_else(|| panic!("{inc}: the ack did not stop the escalation: {events:#?}"));
        let step2 = events
            .iter()
            .position(|(k, t)| k == "escalation" && t.contains("step 2/2"));
        let bob_paged = events
            .iter()
            .any(|(k, t)| k == "page" && t.starts_with("paged bob"));
        match step2 {
            Some(s) => {
                assert!(s < stop, "{inc}: step 2 fired after the ack: {events:#?}");
                before += 1;
            }
            None => {
                assert!(!bob_paged, "{inc}: bob paged with no step 2: {events:#?}");
                after += 1;
            }
        }
        // Nothing fires after the stop.
        assert!(
            !events[stop + 1..]
                .iter()
                .any(|(k, t)| k == "escalation" && t.starts_with("escalation step")),
            "{inc}: {events:#?}"
        );
    }
    println!("ack races ({backend:?}): {before} step 2 decided first, {after} ack decided first");
}

#[tokio::test]
async fn an_ack_racing_a_steps_deadline_is_decided_once_on_sqlite() {
    ack_races_the_deadline(crate::helpers::Backend::Sqlite).await;
}

#[tokio::test]
async fn an_ack_racing_a_steps_deadline_is_decided_once_on_postgres() {
    ack_races_the_deadline(crate::helpers::Backend::Postgres).await;
}

#[tokio::test]
async fn a_page_backing_off_after_a_failure_is_never_sent_once_the_incident_is_acknowledged() {
    use crate::fake_pagers::{Failure, WebhookReceiver};
    let secrets = tempfile::tempdir().expect("temp dir");
    let hook = WebhookReceiver::start("hook-secret").await;
    // The first try fails and asks to come back in 2 s.
    hook.fail_next(Failure {
        status: 503,
        retry_after: Some(2),
        delay: None,
    });
    let toml = format!(
        r#"
[contacts.ann]
timezone = "UTC"
availability = "24/7"
page_via = ["webhook"]

[escalation.P1]
steps = [{{ page = ["ann"], ack_within = "60s" }}]

[pagers.webhook]
url = "{url}"
hmac_secret = {hmac}
"#,
        url = hook.hook_url("x"),
        hmac = secret_file(secrets.path(), "hmac", "hook-secret"),
    );
    let app = spawn_app_with_file(&toml, &[]).await;
    let inc = declare(&app).await;
    wait_event(
        &app,
        &inc,
        "page",
        "failed on every channel; tried again shortly",
        10,
    )
    .await;

    let (_, body) = app.command("sam", &format!("/incident ack {inc}")).await;
    assert_eq!(body["ok"], true, "{body}");

    let cancelled = wait_event(&app, &inc, "page", "page to ann not sent", 10).await;
    assert!(cancelled.contains("acknowledged by sam"), "{cancelled}");
    assert!(hook.accepted().is_empty(), "{:?}", hook.accepted());
}

/// A PagerDuty V3 webhook body, signed as PagerDuty signs it.
fn pagerduty_event(secret: &str, event_type: &str, incident_key: &str) -> (String, String) {
    use hmac::{Hmac, Mac};
    let body = serde_json::json!({"event": {
        "id": "01ABC", "event_type": event_type, "resource_type": "incident",
        "occurred_at": "2026-12-05T12:00:00Z",
        "agent": {"id": "PXPGF42", "summary": "Ann Onduty", "type": "user_reference"},
        "data": {"id": "PT4KHLK", "type": "incident", "status": "acknowledged",
                 "incident_key": incident_key, "title": "checkout is down"}
    }})
    .to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    let signature = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    (body, signature)
}

#[tokio::test]
async fn an_acknowledgement_in_pagerduty_acknowledges_the_incident_and_stops_the_chain() {
    use crate::fake_pagers::FakePagerduty;
    let secrets = tempfile::tempdir().expect("temp dir");
    let pd = FakePagerduty::start("R0UTING").await;
    let toml = format!(
        r#"
[contacts.ann]
timezone = "UTC"
availability = "24/7"
page_via = ["pagerduty"]

[contacts.bob]
timezone = "UTC"
availability = "24/7"
page_via = ["chat_dm"]

[escalation.P1]
steps = [{{ page = ["ann"], ack_within = "2s" }}, {{ page = ["bob"], ack_within = "2s" }}]

[pagers.pagerduty]
routing_key = {key}
api_url = "{url}"
webhook_secret = {hook}
"#,
        key = secret_file(secrets.path(), "pd", "R0UTING"),
        url = pd.url,
        hook = secret_file(secrets.path(), "pdhook", "whsec"),
    );
    let app = spawn_app_with_file(&toml, &[]).await;
    let inc = declare(&app).await;
    wait_event(&app, &inc, "page", "paged ann via pagerduty", 10).await;
    let post = |body: String, signature: String| {
        let client = app.client.clone();
        let url = format!("{}/pagerduty/webhook", app.addr);
        async move {
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .header("x-pagerduty-signature", signature)
                .body(body)
                .send()
                .await
                .expect("post");
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };

    // Forged: 401, nothing changes.
    let (body, _) = pagerduty_event(
        "whsec",
        "incident.acknowledged",
        &format!("firstline-{inc}"),
    );
    let (_, forged) = pagerduty_event(
        "guess",
        "incident.acknowledged",
        &format!("firstline-{inc}"),
    );
    let (status, answer) = post(body.clone(), forged).await;
    assert_eq!(status, 401, "{answer}");
    // Another service's incident: 200, ignored.
    let (other, sig) = pagerduty_event("whsec", "incident.acknowledged", "baf7cf21b1da41b4");
    let (status, answer) = post(other, sig).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["ignored"].is_string(), "{answer}");

    let (body, sig) = pagerduty_event(
        "whsec",
        "incident.acknowledged",
        &format!("firstline-{inc}"),
    );
    let (status, answer) = post(body, sig).await;

    assert_eq!(status, 200, "{answer}");
    let stopped = wait_event(&app, &inc, "escalation", "escalation stopped", 5).await;
    assert!(
        stopped.ends_with("acknowledged by Ann Onduty (PagerDuty)"),
        "{stopped}"
    );
    let (_, shown) = app.get_json(&format!("/api/incidents/{inc}")).await;
    assert_eq!(shown["incident"]["state"], "acknowledged", "{shown}");
    assert_eq!(shown["escalation"]["state"], "stopped", "{shown}");
    assert_eq!(
        shown["escalation"]["reason"], "acknowledged by Ann Onduty (PagerDuty)",
        "{shown}"
    );
    // Past step 2's deadline: bob was never paged.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let pages = events(&app, &inc, "page").await;
    assert!(!pages.iter().any(|t| t.contains("bob")), "{pages:#?}");
}

#[tokio::test]
async fn on_slack_a_step_pages_by_direct_message_and_the_channel_with_a_real_here_mention() {
    let toml = r#"
[contacts.ann]
timezone = "UTC"
availability = "24/7"
slack = "U0ANN"
page_via = ["chat_dm"]

[escalation.P1]
steps = [{ page = ["ann", "channel"], ack_within = "60s" }]
"#;
    // The incident is declared through the console routes, kept on beside
    // Slack for the test.
    let s = crate::slack::slack_app_with_file(
        crate::helpers::Backend::Sqlite,
        toml,
        &[("FIRSTLINE_CHAT__CONSOLE__ENABLED", "true")],
    )
    .await
    .expect("sqlite");
    s.slack.add_user("U0ANN", "ann", "Ann Onduty");

    let inc = declare(&s.app).await;

    wait_event(&s.app, &inc, "page", "paged ann via chat_dm", 10).await;
    wait_event(
        &s.app,
        &inc,
        "page",
        "paged the channel via chat_mention",
        10,
    )
    .await;
    let opened = s.slack.calls_of("conversations.open");
    assert_eq!(opened.len(), 1, "{opened:#?}");
    // slack-morphism sends the list as a JSON array.
    assert_eq!(
        opened[0].body["users"],
        serde_json::json!(["U0ANN"]),
        "{opened:#?}"
    );
    let posts = s.slack.calls_of("chat.postMessage");
    let dm = posts
        .iter()
        .find(|c| {
            c.body["channel"]
                .as_str()
                .is_some_and(|ch| ch.starts_with('D'))
        })
        .expect("a DM");
    assert!(
        dm.body["text"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("{inc} needs you")),
        "{dm:#?}"
    );
    let here = posts
        .iter()
        .find(|c| {
            c.body["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("<!here> "))
        })
        .expect("an @here mention");
    assert!(
        here.body["thread_ts"].is_string(),
        "the mention is in the thread: {here:#?}"
    );
    assert_eq!(
        here.body["blocks"][0]["text"]["text"], "<!here>",
        "{here:#?}"
    );
}
