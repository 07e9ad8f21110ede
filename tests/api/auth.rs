//! Who may call what: `server.api_tokens` in front of `/api/*`,
//! `chat.console.token` and `chat.console.enabled` for `/console/*`; the
//! routes with credentials of their own (hooks, Slack) and the probes'
//! (`/healthz`, `/readyz`, `/metrics`) untouched.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, down_group, spawn_app, spawn_app_with_file};
use crate::slack::{secret_file, slack_app_with_file};

const API_TOKEN: &str = "api-token-for-the-dashboard";
const OTHER_API_TOKEN: &str = "api-token-for-a-script";
const CONSOLE_TOKEN: &str = "console-token-for-the-bridge";

/// A GET of `path` with `Authorization: <authorization>` if given: status,
/// `WWW-Authenticate`, body text.
async fn get(app: &TestApp, path: &str, authorization: Option<&str>) -> (u16, String, String) {
    let mut request = app.client.get(format!("{}{path}", app.addr));
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let r = request.send().await.expect("request");
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (
        r.status().as_u16(),
        challenge,
        r.text().await.unwrap_or_default(),
    )
}

/// A POST of `body` to `path`, likewise; status and JSON body.
async fn post(app: &TestApp, path: &str, authorization: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = app.client.post(format!("{}{path}", app.addr)).json(&body);
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let r = request.send().await.expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn error_of(text: &str) -> String {
    serde_json::from_str::<Value>(text).unwrap_or(Value::Null)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn api_routes_take_only_a_configured_bearer_token_and_say_what_is_missing() {
    let secrets = tempfile::tempdir().expect("temp dir");
    let (one, two) = (
        secret_file(&secrets, "api-1", &format!("{API_TOKEN}\n")),
        secret_file(&secrets, "api-2", OTHER_API_TOKEN),
    );
    let app = spawn_app_with_file(
        &format!("[server]\napi_tokens = [{{ file = \"{one}\" }}, {{ file = \"{two}\" }}]\n"),
        &[],
    )
    .await;
    // An alert still comes in (hooks have their own tokens, none here).
    assert_eq!(app.post_hook("alertmanager", down_group(1)).await.0, 200);

    for path in [
        "/api/incidents",
        "/api/incidents/INC-1",
        "/api/incidents/INC-1/timeline",
        "/api/incidents/INC-1/postmortem?format=md",
    ] {
        let (status, challenge, body) = get(&app, path, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(challenge, "Bearer", "{path}");
        assert!(
            error_of(&body).starts_with("missing bearer token: /api/* needs Authorization: Bearer"),
            "{path}: {body}"
        );
    }
    // Another scheme is no bearer token either.
    let (status, _, body) = get(&app, "/api/incidents", Some("Basic c2FtOnNhbQ==")).await;
    assert_eq!(status, 401);
    assert!(
        error_of(&body).starts_with("missing bearer token"),
        "{body}"
    );

    let (status, challenge, body) = get(
        &app,
        "/api/incidents",
        Some("Bearer api-token-for-the-dashboarD"),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(challenge, "Bearer");
    assert_eq!(error_of(&body), "wrong bearer token");
    assert!(!body.contains(API_TOKEN), "no token echoed: {body}");

    // Either configured token lets the reader in, and it sees the incident.
    for token in [API_TOKEN, OTHER_API_TOKEN] {
        let (status, _, body) = get(&app, "/api/incidents", Some(&format!("Bearer {token}"))).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("INC-1"), "{body}");
    }
    let (status, _, body) = get(
        &app,
        "/api/incidents/INC-1/postmortem?format=md",
        Some(&format!("Bearer {API_TOKEN}")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn api_tokens_leave_health_metrics_hooks_and_the_console_alone() {
    let secrets = tempfile::tempdir().expect("temp dir");
    let one = secret_file(&secrets, "api", API_TOKEN);
    let app = spawn_app_with_file(
        &format!("[server]\napi_tokens = [{{ file = \"{one}\" }}]\n"),
        &[],
    )
    .await;
    let (status, _, body) = get(&app, "/healthz", None).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, _, body) = get(&app, "/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = get(&app, "/metrics", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("firstline_alerts_total"), "{body}");
    let (status, answer) = app.post_hook("alertmanager", down_group(1)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted", "{answer}");
    // The console platform has its own token (none here): open as before.
    let (status, reply) = app.command("sam", "/incident ack INC-1").await;
    assert_eq!(status, 200, "{reply}");
}

#[tokio::test]
async fn the_embedded_default_leaves_the_api_and_the_console_open() {
    let app = spawn_app().await;
    assert_eq!(app.post_hook("alertmanager", down_group(1)).await.0, 200);
    let (status, _, body) = get(&app, "/api/incidents", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("INC-1"), "{body}");
    // A token nobody asked for is not held against the caller.
    let (status, _, _) = get(&app, "/api/incidents", Some("Bearer whatever")).await;
    assert_eq!(status, 200);
    let (status, reply) = app.command("sam", "/incident ack INC-1").await;
    assert_eq!(status, 200, "{reply}");
    let (status, _, body) = get(&app, "/console/posts", None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn console_routes_are_not_there_on_slack_unless_enabled() {
    let Some(off) = slack_app_with_file(Backend::Sqlite, "", &[]).await else {
        return;
    };
    let (status, body) = post(
        &off.app,
        "/console/commands",
        None,
        json!({"user": "mallory", "text": "/incident list"}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("chat.console.enabled = true"),
        "{body}"
    );
    for path in ["/console/posts", "/console/reactions"] {
        let (status, _, body) = get(&off.app, path, None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, body) = post(
        &off.app,
        "/console/reactions",
        None,
        json!({"user": "mallory", "message_ref": "console-1", "emoji": "white_check_mark"}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    drop(off);

    let Some(on) =
        slack_app_with_file(Backend::Sqlite, "[chat.console]\nenabled = true\n", &[]).await
    else {
        return;
    };
    let (status, body) = post(
        &on.app,
        "/console/commands",
        None,
        json!({"user": "sam", "text": "/incident list"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    let (status, _, body) = get(&on.app, "/console/posts", None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_console_token_is_required_when_configured() {
    let secrets = tempfile::tempdir().expect("temp dir");
    let token = secret_file(&secrets, "console", CONSOLE_TOKEN);
    let app = spawn_app_with_file(
        &format!("[chat.console]\ntoken = {{ file = \"{token}\" }}\n"),
        &[],
    )
    .await;
    assert_eq!(app.post_hook("alertmanager", down_group(1)).await.0, 200);
    let ack = json!({"user": "sam", "text": "/incident ack INC-1"});

    let (status, body) = post(&app, "/console/commands", None, ack.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("missing bearer token: /console/* needs Authorization: Bearer"),
        "{body}"
    );
    let (status, body) = post(&app, "/console/commands", Some("Bearer nope"), ack.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("wrong bearer token"))
    );
    let (status, challenge, _) = get(&app, "/console/posts", None).await;
    assert_eq!((status, challenge.as_str()), (401, "Bearer"));
    // Nothing was acknowledged by the refused callers.
    let (_, incident) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(incident["incident"]["state"], "triggered", "{incident}");

    let bearer = format!("Bearer {CONSOLE_TOKEN}");
    let (status, body) = post(&app, "/console/commands", Some(&bearer), ack).await;
    assert_eq!(status, 200, "{body}");
    let (_, incident) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(incident["incident"]["state"], "acknowledged", "{incident}");

    // A reaction, likewise: refused without the token, recorded with it.
    let posts = app.wait_posts("INC-1", 1).await;
    let message_ref = posts[0]["message_ref"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let eyes = json!({"user": "sam", "message_ref": message_ref, "emoji": "eyes"});
    let (status, body) = post(&app, "/console/reactions", None, eyes.clone()).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(&app, "/console/reactions", Some(&bearer), eyes).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    let (status, _, body) = get(&app, "/console/posts", Some(&bearer)).await;
    assert_eq!(status, 200, "{body}");
}

fn check_config(dir: &std::path::Path, file: &str) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firstline"))
        .args(["check-config", "--config", file])
        .current_dir(dir)
        .env_remove("FIRSTLINE_CONFIG")
        .output()
        .expect("run firstline");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_token_whose_secret_cannot_be_read_is_refused_by_its_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("good");
    std::fs::write(&good, API_TOKEN).expect("write secret");
    std::fs::write(
        dir.path().join("bad.toml"),
        format!(
            "[server]\napi_tokens = [\n  {{ file = \"/nonexistent/firstline-api-token\" }},\n  {{ file = \"{}\" }},\n]\n\n[chat.console]\ntoken = {{ env = \"FIRSTLINE_TEST_SURELY_UNSET_CONSOLE_TOKEN\" }}\n",
            good.display()
        ),
    )
    .expect("write config");
    let (code, _, err) = check_config(dir.path(), "bad.toml");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(
        err.contains(
            "server.api_tokens[0] (line 3): cannot read secret file /nonexistent/firstline-api-token"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "chat.console.token (line 8): environment variable FIRSTLINE_TEST_SURELY_UNSET_CONSOLE_TOKEN is not set"
        ),
        "{err}"
    );

    // A token written into the file is refused without being repeated.
    std::fs::write(
        dir.path().join("inline.toml"),
        "[server]\napi_tokens = [\"hunter2\"]\n",
    )
    .expect("write config");
    let (code, _, err) = check_config(dir.path(), "inline.toml");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("server.api_tokens"), "{err}");
    assert!(err.contains("{ env = \"VAR\" }"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    // Readable: check-config says what is behind a token.
    std::fs::write(
        dir.path().join("good.toml"),
        format!(
            "[server]\napi_tokens = [{{ file = \"{}\" }}]\n",
            good.display()
        ),
    )
    .expect("write config");
    let (code, out, err) = check_config(dir.path(), "good.toml");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("api:      1 bearer token(s)"), "{out}");
    assert!(out.contains("console:  /console/* open"), "{out}");
    assert!(!out.contains(API_TOKEN), "{out}");
}
