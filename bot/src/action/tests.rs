//! The action kinds against real services: a loopback HTTP server, real
//! processes, NATS JetStream at 127.0.0.1:4222 and PostgreSQL from
//! `FIRSTLINE_TEST_POSTGRES_URL`. No mocks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use secrecy::SecretString;

use super::command::CommandAction;
use super::http::HttpAction;
use super::nats_publish::{NatsPublishAction, NatsSource};
use super::sql::SqlAction;
use super::{CommandConfig, Env, Outcome, Plan, RunSpec, Vars, execute, prepare};
use crate::probe::{Target, TargetSettings};

const API_KEY: &str = "s3cret-api-key-42";
const TOKEN: &str = "tok-secret-7781";

fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn target(name: &str, settings: TargetSettings) -> Target {
    Target {
        name: name.into(),
        settings,
        secret_headers: BTreeMap::new(),
        password: None,
        http_client: Default::default(),
        sql_connections: Default::default(),
    }
}

fn http_target(name: &str, base_url: &str, secret: Option<(&str, &str)>) -> Target {
    let mut t = target(
        name,
        TargetSettings::Http {
            base_url: base_url.into(),
            headers: BTreeMap::new(),
            secret_headers: BTreeMap::new(),
        },
    );
    if let Some((k, v)) = secret {
        t.secret_headers
            .insert(k.into(), SecretString::from(v.to_string()));
    }
    t
}

fn env_of(targets: Vec<Target>, timeout: Duration) -> Env {
    Env {
        targets: targets.into_iter().map(|t| (t.name.clone(), t)).collect(),
        commands: BTreeMap::new(),
        timeout,
        output_limit: 2000,
    }
}

fn vars(params: &[(&str, &str)]) -> Vars {
    Vars {
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        labels: BTreeMap::from([("service".to_string(), "worker".to_string())]),
        incident: "INC-7".into(),
    }
}

async fn run(spec: RunSpec, vars: &Vars, env: &Env, key: &str) -> (String, Outcome) {
    let plan = prepare(&spec, vars, env).expect("prepare");
    let text = plan.describe();
    (text, execute(&plan, env, key).await)
}

// ---------------------------------------------------------------- http

#[derive(Default)]
struct Seen {
    calls: usize,
    headers: Vec<HeaderMap>,
    bodies: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

async fn status(
    State(seen): State<Shared>,
    Path(code): Path<u16>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let mut s = seen.lock().expect("lock");
    s.calls += 1;
    s.headers.push(headers);
    s.bodies.push(body);
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT),
        format!("  answered {code}\n"),
    )
}

async fn echo_key(State(seen): State<Shared>, headers: HeaderMap) -> String {
    seen.lock().expect("lock").calls += 1;
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    format!("your key is {key}")
}

async fn redirect(State(seen): State<Shared>) -> impl IntoResponse {
    seen.lock().expect("lock").calls += 1;
    (StatusCode::FOUND, [("location", "/status/200")], "")
}

async fn executions(headers: HeaderMap) -> axum::response::Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        return (StatusCode::UNAUTHORIZED, "no key").into_response();
    }
    let subject = headers
        .get("x-test-subject")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    axum::Json(serde_json::json!({
        "items": [
            {"id": "e-1", "subject": subject, "payload": "{\"order\":1}"},
            {"id": 2, "subject": subject, "payload": {"order": 2}},
        ]
    }))
    .into_response()
}

/// A loopback server; its base URL and what it saw.
async fn serve() -> (String, Shared) {
    let seen = Shared::default();
    let app = axum::Router::new()
        .route("/status/{code}", axum::routing::any(status))
        .route("/echo-key", axum::routing::any(echo_key))
        .route("/redirect", axum::routing::any(redirect))
        .route("/api/executions", axum::routing::get(executions))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), seen)
}

fn http_spec(path: &str, expect: &[u16]) -> HttpAction {
    HttpAction {
        target: "api".into(),
        method: "post".into(),
        path: path.into(),
        headers: BTreeMap::new(),
        body: None,
        expect_status: expect.to_vec(),
    }
}

#[tokio::test]
async fn http_sends_the_key_secret_headers_and_body() {
    let (base, seen) = serve().await;
    let env = env_of(
        vec![http_target("api", &base, Some(("X-Api-Key", API_KEY)))],
        Duration::from_secs(5),
    );
    let mut spec = http_spec("/status/{{ params.code }}", &[202]);
    spec.headers.insert(
        "X-Reason".into(),
        "{{ labels.service }} on {{ incident }}".into(),
    );
    spec.body =
        Some(r#"{"component": "{{ params.component }}", "incident": "{{ incident }}"}"#.into());
    let v = vars(&[("code", "202"), ("component", "notification-worker")]);
    let (text, outcome) = run(RunSpec::Http(spec), &v, &env, "appr-1-key").await;

    assert_eq!(
        text,
        format!(
            "POST {base}/status/202\nX-Api-Key: ••••\nX-Reason: worker on INC-7\nIdempotency-Key: (one per approval)\n{{\"component\": \"notification-worker\", \"incident\": \"INC-7\"}}\nexpects 202"
        )
    );
    assert!(!text.contains(API_KEY));
    assert!(outcome.ok, "{outcome:?}");
    assert!(outcome.summary.starts_with("HTTP 202 in "), "{outcome:?}");
    assert!(outcome.summary.ends_with(" ms"), "{outcome:?}");
    assert_eq!(outcome.output, "answered 202");

    let s = seen.lock().expect("lock");
    assert_eq!(s.calls, 1);
    let h = &s.headers[0];
    assert_eq!(h["idempotency-key"], "appr-1-key");
    assert_eq!(h["x-api-key"], API_KEY);
    assert_eq!(h["x-reason"], "worker on INC-7");
    assert_eq!(h["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&s.bodies[0]).expect("json body");
    assert_eq!(body["component"], "notification-worker");
}

#[tokio::test]
async fn http_statuses_decide_ok_and_retry() {
    let (base, seen) = serve().await;
    let env = env_of(
        vec![http_target("api", &base, Some(("X-Api-Key", API_KEY)))],
        Duration::from_secs(5),
    );
    let v = vars(&[]);
    let cases: [(&str, &[u16], bool, bool); 6] = [
        ("/status/202", &[200], false, false),
        ("/status/204", &[], true, false),
        ("/status/503", &[], false, true),
        ("/status/429", &[], false, true),
        ("/status/400", &[], false, false),
        ("/status/404", &[404], true, false),
    ];
    for (path, expect, ok, retryable) in cases {
        let (_, o) = run(RunSpec::Http(http_spec(path, expect)), &v, &env, "k").await;
        assert_eq!((o.ok, o.retryable), (ok, retryable), "{path}: {o:?}");
    }
    let (_, o) = run(
        RunSpec::Http(http_spec("/status/202", &[200])),
        &v,
        &env,
        "k",
    )
    .await;
    assert!(o.summary.starts_with("HTTP 202 in "), "{o:?}");
    assert!(o.summary.ends_with(", expects 200"), "{o:?}");

    // A text body goes as text/plain.
    let mut spec = http_spec("/status/200", &[]);
    spec.body = Some("restart please".into());
    let (_, o) = run(RunSpec::Http(spec), &v, &env, "k").await;
    assert!(o.ok, "{o:?}");
    {
        let s = seen.lock().expect("lock");
        let last = s.headers.last().expect("a call");
        assert_eq!(last["content-type"], "text/plain; charset=utf-8");
        assert_eq!(s.bodies.last().map(String::as_str), Some("restart please"));
    }

    // Redirects are answers, not followed.
    let before = seen.lock().expect("lock").calls;
    let (_, o) = run(RunSpec::Http(http_spec("/redirect", &[])), &v, &env, "k").await;
    assert!(!o.ok && !o.retryable, "{o:?}");
    assert!(o.summary.starts_with("HTTP 302"), "{o:?}");
    assert_eq!(seen.lock().expect("lock").calls, before + 1);

    // A server echoing the secret: masked in the output.
    let (_, o) = run(RunSpec::Http(http_spec("/echo-key", &[])), &v, &env, "k").await;
    assert_eq!(o.output, "your key is ••••");
}

#[tokio::test]
async fn http_refused_connection_is_retryable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let env = env_of(
        vec![http_target("api", &format!("http://{addr}"), None)],
        Duration::from_secs(3),
    );
    let (_, o) = run(
        RunSpec::Http(http_spec("/status/200", &[])),
        &vars(&[]),
        &env,
        "k",
    )
    .await;
    assert!(!o.ok && o.retryable, "{o:?}");
    assert!(o.summary.contains(&addr.to_string()), "{o:?}");
}

#[test]
fn http_prepare_names_what_is_wrong() {
    let env = env_of(
        vec![
            http_target("api", "http://127.0.0.1:9", Some(("X-Api-Key", API_KEY))),
            target(
                "bus",
                TargetSettings::Nats {
                    url: "nats://127.0.0.1:4222".into(),
                },
            ),
        ],
        Duration::from_secs(1),
    );
    let v = vars(&[]);
    let mut spec = http_spec("/x", &[]);
    spec.target = "nope".into();
    let e = prepare(&RunSpec::Http(spec), &v, &env).expect_err("unknown target");
    assert_eq!(e, "unknown target \"nope\": configured are api, bus");

    let mut spec = http_spec("/x", &[]);
    spec.target = "bus".into();
    let e = prepare(&RunSpec::Http(spec), &v, &env).expect_err("wrong kind");
    assert_eq!(e, "target \"bus\" is of kind nats, not http");

    let e = prepare(
        &RunSpec::Http(http_spec("/{{ params.missing }}", &[])),
        &v,
        &env,
    )
    .expect_err("missing param");
    assert!(e.starts_with("placeholder in"), "{e}");

    let mut spec = http_spec("/x", &[]);
    spec.headers.insert("x-api-key".into(), "mine".into());
    let e = prepare(&RunSpec::Http(spec), &v, &env).expect_err("secret header");
    assert!(e.contains("secret header"), "{e}");
}

// ------------------------------------------------------------- command

fn command_env(commands: Vec<(&str, CommandConfig)>, timeout: Duration) -> Env {
    let mut env = env_of(Vec::new(), timeout);
    env.commands = commands
        .into_iter()
        .map(|(k, c)| (k.to_string(), c))
        .collect();
    env
}

fn cmd(argv: &[&str]) -> CommandConfig {
    CommandConfig {
        argv: argv.iter().map(|a| a.to_string()).collect(),
        workdir: None,
        env: BTreeMap::new(),
        secret_env: BTreeMap::new(),
    }
}

fn command(name: &str) -> RunSpec {
    RunSpec::Command(CommandAction {
        command: name.into(),
    })
}

#[tokio::test]
async fn command_runs_argv_without_a_shell() {
    let dir = std::env::temp_dir().join(format!("firstline-action-{}", unique()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("touched it");
    let mut touch = cmd(&["touch", "{{ params.path }}"]);
    touch.workdir = Some(dir.clone());
    touch.env.insert("A".into(), "1".into());
    touch
        .secret_env
        .insert("TOKEN".into(), SecretString::from(TOKEN.to_string()));
    let env = command_env(
        vec![
            ("touch", touch),
            ("echo", cmd(&["printf", "%s|", "{{ params.x }}"])),
        ],
        Duration::from_secs(5),
    );
    let path = file.to_string_lossy().into_owned();
    let (text, o) = run(command("touch"), &vars(&[("path", &path)]), &env, "k").await;
    assert_eq!(
        text,
        format!(
            "touch '{path}'\nin {}\nenv: A=1, TOKEN=••••",
            dir.to_string_lossy()
        )
    );
    assert!(o.ok, "{o:?}");
    assert!(
        o.summary.starts_with("exit 0 in ") && o.summary.ends_with(" ms"),
        "{o:?}"
    );
    assert!(file.exists());

    // One value, one argument: nothing a shell would do happens.
    let (_, o) = run(
        command("echo"),
        &vars(&[("x", "a b; rm -rf / $(id)")]),
        &env,
        "k",
    )
    .await;
    assert_eq!(o.output, "a b; rm -rf / $(id)|");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn command_failures() {
    let mut printenv = cmd(&["printenv", "TOKEN", "FIRSTLINE_IDEMPOTENCY_KEY"]);
    printenv
        .secret_env
        .insert("TOKEN".into(), SecretString::from(TOKEN.to_string()));
    let env = command_env(
        vec![
            ("false", cmd(&["false"])),
            ("missing", cmd(&["/nonexistent/firstline-no-such-program"])),
            ("sleep", cmd(&["sleep", "5"])),
            ("printenv", printenv),
            ("touch", cmd(&["touch", "{{ params.path }}"])),
        ],
        Duration::from_secs(1),
    );
    let v = vars(&[]);

    let (_, o) = run(command("false"), &v, &env, "k").await;
    assert!(!o.ok && o.retryable, "{o:?}");
    assert!(o.summary.starts_with("exit 1 in "), "{o:?}");

    let (_, o) = run(command("missing"), &v, &env, "k").await;
    assert!(!o.ok && !o.retryable, "{o:?}");
    assert!(o.summary.starts_with("cannot start /nonexistent/"), "{o:?}");

    let started = Instant::now();
    let (_, o) = run(command("sleep"), &v, &env, "k").await;
    assert!(!o.ok && o.retryable, "{o:?}");
    assert_eq!(o.summary, "timed out after 1 s, killed");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let (text, o) = run(command("printenv"), &v, &env, "appr-9").await;
    assert!(!text.contains(TOKEN), "{text}");
    assert!(o.ok, "{o:?}");
    assert_eq!(o.output, "••••\nappr-9");

    let e = prepare(&command("touch"), &vars(&[("path", "")]), &env).expect_err("empty");
    assert!(e.contains("renders empty"), "{e}");
    let e = prepare(&command("nope"), &v, &env).expect_err("unknown");
    assert_eq!(
        e,
        "unknown command \"nope\": configured are false, missing, printenv, sleep, touch"
    );
}

// --------------------------------------------------------------- nats

const NATS_URL: &str = "nats://127.0.0.1:4222";

/// JetStream at [`NATS_URL`], or `None` (skipped) when it does not answer
/// and `FIRSTLINE_REQUIRE_NATS` is not 1.
async fn nats() -> Option<async_nats::jetstream::Context> {
    let connect = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(NATS_URL);
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(client)) => Some(async_nats::jetstream::new(client)),
        outcome => {
            let why = match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer".into(),
            };
            if std::env::var("FIRSTLINE_REQUIRE_NATS").as_deref() == Ok("1") {
                panic!("NATS not reachable at {NATS_URL} ({why}) and FIRSTLINE_REQUIRE_NATS=1");
            }
            eprintln!("skipped: NATS not reachable at {NATS_URL} ({why})");
            None
        }
    }
}

async fn create_stream(
    js: &async_nats::jetstream::Context,
    name: &str,
    subject: &str,
) -> async_nats::jetstream::stream::Stream {
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.into(),
        subjects: vec![subject.into()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("create stream")
}

async fn messages(stream: &async_nats::jetstream::stream::Stream) -> u64 {
    stream.get_info().await.expect("stream info").state.messages
}

fn nats_env(extra: Vec<Target>) -> Env {
    let mut targets = vec![target(
        "bus",
        TargetSettings::Nats {
            url: NATS_URL.into(),
        },
    )];
    targets.extend(extra);
    env_of(targets, Duration::from_secs(5))
}

fn dlq(stream: &str, filter: Option<&str>, max: u32) -> RunSpec {
    RunSpec::NatsPublish(NatsPublishAction {
        target: "bus".into(),
        from: NatsSource::DlqStream {
            stream: stream.into(),
            filter_subject: filter.map(str::to_string),
            subject_header: "Nats-Original-Subject".into(),
        },
        max_messages: max,
    })
}

#[tokio::test]
async fn nats_republishes_a_dlq_once() {
    let Some(js) = nats().await else { return };
    let u = unique();
    let dlq_name = format!("FL_DLQ_{u}");
    let out_name = format!("FL_OUT_{u}");
    let dlq_stream = create_stream(&js, &dlq_name, &format!("fl.{u}.dlq.>")).await;
    let out_stream = create_stream(&js, &out_name, &format!("fl.{u}.out.>")).await;
    for i in 0..3 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Original-Subject",
            format!("fl.{u}.out.orders").as_str(),
        );
        headers.insert("trace-id", format!("t-{i}").as_str());
        js.publish_with_headers(
            format!("fl.{u}.dlq.orders"),
            headers,
            format!("{{\"order\":{i}}}").into(),
        )
        .await
        .expect("publish")
        .await
        .expect("ack");
    }
    let env = nats_env(Vec::new());
    let v = vars(&[]);

    let (text, o) = run(dlq(&dlq_name, None, 5), &v, &env, "appr-1").await;
    assert_eq!(
        text,
        format!(
            "re-publish at most 5 messages from stream {dlq_name} to their original subjects (header Nats-Original-Subject) on {NATS_URL}, with Nats-Msg-Id <key>-{dlq_name}-<seq>; nothing if there are more (the DLQ is left as it is)"
        )
    );
    assert!(o.ok, "{o:?}");
    assert_eq!(
        o.summary,
        "3 published to their subjects, 0 dropped by JetStream as duplicates"
    );

    // The same approval again: every message is a duplicate.
    let (_, o) = run(dlq(&dlq_name, None, 5), &v, &env, "appr-1").await;
    assert!(o.ok, "{o:?}");
    assert_eq!(
        o.summary,
        "0 published to their subjects, 3 dropped by JetStream as duplicates"
    );
    assert_eq!(messages(&out_stream).await, 3);
    assert_eq!(messages(&dlq_stream).await, 3, "the DLQ is only read");

    let first = out_stream.get_raw_message(1).await.expect("first");
    assert_eq!(first.subject.as_str(), format!("fl.{u}.out.orders"));
    assert_eq!(first.payload.as_ref(), b"{\"order\":0}");
    let id = first.headers.get("Nats-Msg-Id").map(|v| v.to_string());
    assert_eq!(id, Some(format!("appr-1-{dlq_name}-1")));
    assert_eq!(
        first.headers.get("trace-id").map(|v| v.to_string()),
        Some("t-0".into())
    );

    // Over the ceiling: nothing published, even with a new key.
    let (_, o) = run(dlq(&dlq_name, None, 2), &v, &env, "appr-2").await;
    assert!(!o.ok && !o.retryable, "{o:?}");
    assert_eq!(
        o.summary,
        format!("3 messages in {dlq_name}, more than max_messages 2: nothing published")
    );
    assert_eq!(messages(&out_stream).await, 3);

    // A message without its subject header is reported and skipped.
    js.publish(format!("fl.{u}.dlq.lost"), "lost".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let (_, o) = run(
        dlq(&dlq_name, Some(&format!("fl.{u}.dlq.lost")), 5),
        &v,
        &env,
        "appr-3",
    )
    .await;
    assert!(!o.ok && !o.retryable, "{o:?}");
    assert_eq!(
        o.summary,
        "0 published to their subjects, 0 dropped by JetStream as duplicates, 1 skipped"
    );
    assert_eq!(o.output, "seq 4: skipped: no Nats-Original-Subject header");
    assert_eq!(messages(&out_stream).await, 3);

    let _ = js.delete_stream(&dlq_name).await;
    let _ = js.delete_stream(&out_name).await;
}

#[tokio::test]
async fn nats_republishes_execution_log_entries() {
    let Some(js) = nats().await else { return };
    let u = unique();
    let out_name = format!("FL_LOGS_{u}");
    let out_stream = create_stream(&js, &out_name, &format!("fl.{u}.logs.>")).await;
    let (base, _) = serve().await;
    let mut logs = http_target("logs", &base, Some(("X-API-Key", API_KEY)));
    if let TargetSettings::Http { headers, .. } = &mut logs.settings {
        headers.insert("X-Test-Subject".into(), format!("fl.{u}.logs.orders"));
    }
    let env = nats_env(vec![logs]);
    let spec = |max| {
        RunSpec::NatsPublish(NatsPublishAction {
            target: "bus".into(),
            from: NatsSource::ExecutionLogs {
                target: "logs".into(),
                path: "/api/executions?workflow_id={{ params.workflow }}".into(),
                items: "items".into(),
                subject_field: "subject".into(),
                payload_field: "payload".into(),
                id_field: "id".into(),
            },
            max_messages: max,
        })
    };
    let v = vars(&[("workflow", "wf-1")]);

    let (text, o) = run(spec(5), &v, &env, "appr-1").await;
    assert_eq!(
        text,
        format!(
            "re-publish at most 5 entries of GET {base}/api/executions?workflow_id=wf-1 with X-API-Key: •••• (target logs; array /items) to their subjects (field subject, payload field payload) on {NATS_URL}, with Nats-Msg-Id <key>-<id>; nothing if there are more"
        )
    );
    assert!(o.ok, "{o:?}");
    assert_eq!(
        o.summary,
        "2 published to their subjects, 0 dropped by JetStream as duplicates"
    );
    let (_, o) = run(spec(5), &v, &env, "appr-1").await;
    assert_eq!(
        o.summary,
        "0 published to their subjects, 2 dropped by JetStream as duplicates"
    );
    assert_eq!(messages(&out_stream).await, 2);
    let second = out_stream.get_raw_message(2).await.expect("second");
    assert_eq!(second.payload.as_ref(), b"{\"order\":2}");
    assert_eq!(
        second.headers.get("Nats-Msg-Id").map(|v| v.to_string()),
        Some("appr-1-2".into())
    );

    let (_, o) = run(spec(1), &v, &env, "appr-2").await;
    assert!(!o.ok && !o.retryable, "{o:?}");
    assert_eq!(
        o.summary,
        format!(
            "2 entries from {base}/api/executions?workflow_id=wf-1, more than max_messages 1: nothing published"
        )
    );
    assert_eq!(messages(&out_stream).await, 2);
    let _ = js.delete_stream(&out_name).await;
}

#[test]
fn nats_prepare_wants_a_nats_target() {
    let env = nats_env(vec![http_target("api", "http://127.0.0.1:9", None)]);
    let mut spec = NatsPublishAction {
        target: "api".into(),
        from: NatsSource::DlqStream {
            stream: "DLQ".into(),
            filter_subject: None,
            subject_header: "Nats-Original-Subject".into(),
        },
        max_messages: 3,
    };
    let e = prepare(&RunSpec::NatsPublish(spec.clone()), &vars(&[]), &env).expect_err("kind");
    assert_eq!(e, "target \"api\" is of kind http, not nats");
    spec.target = "bus".into();
    spec.max_messages = 0;
    let e = prepare(&RunSpec::NatsPublish(spec), &vars(&[]), &env).expect_err("zero");
    assert_eq!(e, "max_messages must be at least 1");
}

// ---------------------------------------------------------------- sql

/// `FIRSTLINE_TEST_POSTGRES_URL`, or `None` (skipped) unless
/// `FIRSTLINE_REQUIRE_POSTGRES=1`.
fn postgres_url() -> Option<String> {
    match std::env::var("FIRSTLINE_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("FIRSTLINE_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("FIRSTLINE_REQUIRE_POSTGRES=1 but FIRSTLINE_TEST_POSTGRES_URL is unset");
            }
            eprintln!("skipped: FIRSTLINE_TEST_POSTGRES_URL is unset");
            None
        }
    }
}

fn sql(statement: &str, max_rows: u64) -> RunSpec {
    RunSpec::Sql(SqlAction {
        target: "db".into(),
        statement: statement.into(),
        max_rows,
    })
}

#[tokio::test]
async fn sql_writes_within_the_ceiling_with_binds() {
    use sqlx::{Connection, Row};

    let Some(url) = postgres_url() else { return };
    let table = format!("firstline_action_{}", unique());
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, status text NOT NULL, note text);
         INSERT INTO {table} (id, status) SELECT g, 'FAILED' FROM generate_series(1, 5) g"
    )))
    .execute(&mut conn)
    .await
    .expect("create table");

    let env = env_of(
        vec![target(
            "db",
            TargetSettings::Postgres {
                url: url.clone(),
                password: None,
                allow_privileged: false,
            },
        )],
        Duration::from_secs(5),
    );
    let note = "O'Brien said \"hi\" -- $1 {{ x }}";
    let v = vars(&[("upto", "2"), ("note", note)]);
    let update = format!(
        "-- retry the first ones\nUPDATE {table} SET status = 'PENDING', note = {{{{ params.note }}}} WHERE id <= {{{{ params.upto }}}}::int;"
    );
    let (text, o) = run(sql(&update, 3), &v, &env, "k").await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.summary, "2 rows updated, committed");
    let shown = "note = $1 WHERE id <= $2::int with $1='O''Brien said \"hi\" -- $1 {{ x }}', $2='2'; rolled back if more than 3 rows";
    assert!(text.contains(shown), "{text}");
    assert!(text.starts_with("on db (postgres://"), "{text}");

    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, status, note FROM {table} ORDER BY id"
    )))
    .fetch_all(&mut conn)
    .await
    .expect("select");
    let seen: Vec<(i32, String, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(seen[0], (1, "PENDING".into(), Some(note.into())));
    assert_eq!(seen[1], (2, "PENDING".into(), Some(note.into())));
    assert_eq!(seen[2], (3, "FAILED".into(), None));

    // Over the ceiling: rolled back, nothing changed.
    let all = format!("UPDATE {table} SET status = 'DONE'");
    let (_, o) = run(sql(&all, 3), &v, &env, "k").await;
    assert!(!o.ok && !o.retryable, "{o:?}");
    assert_eq!(
        o.summary,
        "would touch 5 rows, more than max_rows 3: rolled back"
    );
    let done: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table} WHERE status = 'DONE'"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(done, 0);

    // A statement the database refuses: not retryable, rolled back.
    let bad = format!("INSERT INTO {table} (id, status) VALUES (1, 'dup')");
    let (_, o) = run(sql(&bad, 3), &v, &env, "k").await;
    assert!(!o.ok && !o.retryable, "{o:?}");
    assert!(o.summary.contains("SQLSTATE 23505"), "{o:?}");

    let one = format!("DELETE FROM {table} WHERE id = {{{{ params.upto }}}}::int");
    let (_, o) = run(sql(&one, 1), &v, &env, "k").await;
    assert_eq!(o.summary, "1 row deleted, committed");

    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(&mut conn)
        .await;
}

#[test]
fn sql_prepare_refuses_what_is_not_one_write() {
    let env = env_of(
        vec![target(
            "db",
            TargetSettings::Postgres {
                url: "postgres://app:pw-in-url@127.0.0.1:5432/orders?sslmode=disable".into(),
                password: None,
                allow_privileged: false,
            },
        )],
        Duration::from_secs(1),
    );
    let v = vars(&[("id", "7")]);
    let refused = |statement: &str| prepare(&sql(statement, 1), &v, &env).expect_err(statement);
    assert_eq!(
        refused("SELECT * FROM t"),
        "the statement starts with SELECT: only UPDATE, INSERT or DELETE may run"
    );
    assert!(refused("/* x */ DROP TABLE t").contains("starts with DROP"));
    assert!(refused("UPDATE t SET a = 1; DELETE FROM t").contains("only one statement"));
    assert!(refused("UPDATE t SET a = '{{ params.id }}'").contains("inside quotes"));
    assert!(refused("UPDATE t SET \"{{ params.id }}\" = 1").contains("inside quotes"));
    assert!(refused("UPDATE t SET a = 1 -- {{ params.id }}").contains("inside a comment"));
    assert!(refused("UPDATE t /* {{ params.id }} */ SET a = 1").contains("inside a comment"));
    assert!(refused("UPDATE t SET a = $1").contains("$1-style"));
    assert!(refused("UPDATE t SET a = {% if true %}1{% endif %}").contains("{% … %}"));

    let plan = prepare(
        &sql(
            "  update t set a = 'it''s' where id = {{ params.id }}::int ; ",
            1,
        ),
        &v,
        &env,
    )
    .expect("prepare");
    assert_eq!(
        plan.describe(),
        "on db (postgres://app@127.0.0.1:5432/orders): update t set a = 'it''s' where id = $1::int with $1='7'; rolled back if more than 1 row"
    );
    let Plan::Sql(p) = &plan else {
        panic!("not a sql plan")
    };
    assert_eq!(p.binds, vec!["7".to_string()]);
}
