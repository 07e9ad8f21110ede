//! The http, tcp, metrics and prometheus probes against real axum servers
//! on loopback ports: `firstline::probe::observe` called directly with
//! hand-built targets.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use firstline::probe::http::HttpProbe;
use firstline::probe::metrics::MetricsProbe;
use firstline::probe::prometheus::{PrometheusProbe, RangeSpec};
use firstline::probe::tcp::TcpProbe;
use firstline::probe::{Observation, ProbeError, ProbeSpec, Target, TargetSettings, observe};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{closed_address, serve};

const TIMEOUT: Duration = Duration::from_secs(5);
const API_KEY: &str = "fl-test-key-7f3a9c";

fn http_target(base_url: &str, secret_headers: &[(&str, &str)]) -> Target {
    Target {
        name: "api".into(),
        settings: TargetSettings::Http {
            base_url: base_url.into(),
            headers: BTreeMap::from([("X-Client".to_string(), "firstline-test".to_string())]),
            secret_headers: BTreeMap::new(),
        },
        secret_headers: secret_headers
            .iter()
            .map(|(k, v)| (k.to_string(), SecretString::from(v.to_string())))
            .collect(),
        password: None,
        http_client: Default::default(),
        sql_connections: Default::default(),
    }
}

fn prometheus_target(url: &str) -> Target {
    Target {
        name: "prom".into(),
        settings: TargetSettings::Prometheus { url: url.into() },
        secret_headers: BTreeMap::new(),
        password: None,
        http_client: Default::default(),
        sql_connections: Default::default(),
    }
}

fn tcp_target(address: &str) -> Target {
    Target {
        name: "db-port".into(),
        settings: TargetSettings::Tcp {
            address: address.into(),
        },
        secret_headers: BTreeMap::new(),
        password: None,
        http_client: Default::default(),
        sql_connections: Default::default(),
    }
}

fn get_probe(path: &str) -> HttpProbe {
    HttpProbe {
        target: "api".into(),
        method: "GET".into(),
        path: path.into(),
        query: BTreeMap::new(),
        headers: BTreeMap::new(),
        attempts: 1,
        spacing_ms: 0,
        expect_status: None,
    }
}

fn metrics_probe(metric: &str, labels: &[(&str, &str)]) -> ProbeSpec {
    ProbeSpec::Metrics(MetricsProbe {
        target: "api".into(),
        path: "/metrics".into(),
        metric: metric.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        also: Vec::new(),
        window_s: None,
    })
}

fn prometheus_probe(query: &str, range: Option<RangeSpec>) -> ProbeSpec {
    ProbeSpec::Prometheus(PrometheusProbe {
        target: "prom".into(),
        query: query.into(),
        range,
    })
}

async fn observe_ok(spec: &ProbeSpec, target: &Target) -> Observation {
    match observe(spec, target, TIMEOUT).await {
        Ok(o) => o,
        Err(e) => panic!("expected an observation, got {e}"),
    }
}

async fn observe_err(spec: &ProbeSpec, target: &Target, timeout: Duration) -> ProbeError {
    match observe(spec, target, timeout).await {
        Ok(o) => panic!("expected an error, got {o:?}"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------- http

#[tokio::test]
async fn the_summary_api_probe_sends_its_query_and_exposes_the_json_body() {
    let seen: Arc<Mutex<Vec<HashMap<String, String>>>> = Arc::default();
    let log = seen.clone();
    let router = Router::new().route(
        "/api/workflow-events/summary",
        get(move |Query(q): Query<HashMap<String, String>>| {
            let log = log.clone();
            async move {
                log.lock().expect("lock").push(q);
                axum::Json(json!({
                    "status": "ok",
                    "by_status": {"success": 10, "failed": 2},
                    "by_reason_class": {"infra": 2},
                    "by_retry_advice": {},
                    "recent": []
                }))
            }
        }),
    );
    // A trailing slash on the base URL is handled.
    let base = format!("{}/", serve(router).await);
    let mut probe = get_probe("/api/workflow-events/summary");
    probe.query = BTreeMap::from([
        ("ym".to_string(), "2026-02".to_string()),
        ("recent_limit".to_string(), "20".to_string()),
    ]);

    let o = observe_ok(&ProbeSpec::Http(probe), &http_target(&base, &[])).await;

    assert_eq!(o.data["status"], 200);
    assert_eq!(o.data["attempts"], 1);
    assert_eq!(o.data["body"]["by_status"]["failed"], 2);
    assert_eq!(o.data["body"]["by_reason_class"]["infra"], 2);
    assert!(o.data["elapsed_ms"].is_u64());
    assert!(o.evidence.starts_with("HTTP 200 OK"), "{}", o.evidence);
    // The document's own key order, one member a line.
    assert!(
        o.evidence.contains("by_status: {\"failed\":2,"),
        "{}",
        o.evidence
    );
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].get("ym").map(String::as_str), Some("2026-02"));
    assert_eq!(seen[0].get("recent_limit").map(String::as_str), Some("20"));
}

#[tokio::test]
async fn a_query_value_with_reserved_characters_is_url_encoded() {
    let seen: Arc<Mutex<Vec<HashMap<String, String>>>> = Arc::default();
    let log = seen.clone();
    let router = Router::new().route(
        "/search",
        get(move |Query(q): Query<HashMap<String, String>>| {
            let log = log.clone();
            async move {
                log.lock().expect("lock").push(q);
                "plain text answer"
            }
        }),
    );
    let base = serve(router).await;
    let mut probe = get_probe("search");
    probe.query = BTreeMap::from([("q".to_string(), "a&b=c d/é".to_string())]);

    let o = observe_ok(&ProbeSpec::Http(probe), &http_target(&base, &[])).await;

    assert_eq!(
        o.data["body"], "plain text answer",
        "a non-JSON body is kept as text"
    );
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen[0].get("q").map(String::as_str), Some("a&b=c d/é"));
}

#[tokio::test]
async fn a_secret_header_reaches_the_server_but_never_the_data_evidence_or_error() {
    let keys: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = keys.clone();
    let record = move |headers: HeaderMap| {
        let log = log.clone();
        async move {
            let key = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let client = headers
                .get("x-client")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let trace = headers
                .get("x-trace")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            log.lock().expect("lock").push(key.clone());
            // A careless server that echoes the key back.
            axum::Json(json!({"items": [], "client": client, "trace": trace, "echo": key}))
        }
    };
    let router = Router::new().route("/api/execution-logs", get(record));
    let base = serve(router).await;
    let target = http_target(&base, &[("X-API-Key", API_KEY)]);
    let mut probe = get_probe("/api/execution-logs");
    probe.headers = BTreeMap::from([("X-Trace".to_string(), "probe-1".to_string())]);

    let o = observe_ok(&ProbeSpec::Http(probe.clone()), &target).await;

    assert_eq!(keys.lock().expect("lock").as_slice(), [API_KEY.to_string()]);
    assert_eq!(
        o.data["body"]["client"], "firstline-test",
        "the target's headers are sent"
    );
    assert_eq!(
        o.data["body"]["trace"], "probe-1",
        "the probe's headers are sent"
    );
    assert_eq!(o.data["body"]["echo"], "[redacted]");
    assert!(!o.data.to_string().contains(API_KEY));
    assert!(!o.evidence.contains(API_KEY));
    assert!(!format!("{o:?}").contains(API_KEY));

    // The same target where nothing listens: the error does not carry it either.
    let down = http_target(
        &format!("http://{}", closed_address().await),
        &[("X-API-Key", API_KEY)],
    );
    let e = observe_err(&ProbeSpec::Http(probe), &down, TIMEOUT).await;
    assert!(!e.to_string().contains(API_KEY), "{e}");
    assert!(!format!("{e:?}").contains(API_KEY), "{e:?}");
}

#[tokio::test]
async fn a_probe_retries_until_the_expected_status_and_counts_its_attempts() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let router = Router::new().route(
        "/health",
        get(move || {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
                } else {
                    axum::Json(json!({"status": "healthy"})).into_response()
                }
            }
        }),
    );
    let base = serve(router).await;
    let mut probe = get_probe("/health");
    probe.attempts = 3;
    probe.spacing_ms = 10;

    let o = observe_ok(&ProbeSpec::Http(probe), &http_target(&base, &[])).await;

    assert_eq!(o.data["status"], 200);
    assert_eq!(o.data["attempts"], 3);
    assert_eq!(o.data["body"]["status"], "healthy");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn when_every_attempt_fails_the_last_response_is_observed_for_the_expectations_to_judge() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let router = Router::new().route(
        "/health",
        get(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"error": "db down"})),
                )
            }
        }),
    );
    let base = serve(router).await;
    let mut probe = get_probe("/health");
    probe.attempts = 2;
    probe.spacing_ms = 10;

    let o = observe_ok(&ProbeSpec::Http(probe), &http_target(&base, &[])).await;

    assert_eq!(o.data["status"], 500);
    assert_eq!(o.data["attempts"], 2);
    assert_eq!(o.data["body"]["error"], "db down");
    assert!(
        o.evidence.starts_with("HTTP 500 Internal Server Error"),
        "{}",
        o.evidence
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_expected_status_other_than_2xx_ends_the_retries() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let router = Router::new().route(
        "/gone",
        get(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                StatusCode::NOT_FOUND
            }
        }),
    );
    let base = serve(router).await;
    let mut probe = get_probe("/gone");
    probe.attempts = 5;
    probe.spacing_ms = 10;
    probe.expect_status = Some(404);

    let o = observe_ok(&ProbeSpec::Http(probe), &http_target(&base, &[])).await;

    assert_eq!(o.data["status"], 404);
    assert_eq!(o.data["attempts"], 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_server_slower_than_the_timeout_is_a_timeout() {
    let router = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "late"
        }),
    );
    let base = serve(router).await;

    let e = observe_err(
        &ProbeSpec::Http(get_probe("/slow")),
        &http_target(&base, &[]),
        Duration::from_millis(200),
    )
    .await;

    assert!(
        matches!(e, ProbeError::Timeout(ref t, _) if t == "api"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_port_where_nothing_listens_is_unreachable() {
    let addr = closed_address().await;

    let e = observe_err(
        &ProbeSpec::Http(get_probe("/health")),
        &http_target(&format!("http://{addr}"), &[]),
        TIMEOUT,
    )
    .await;

    match e {
        ProbeError::Unreachable(target, reason) => {
            assert_eq!(target, "api");
            assert!(reason.contains(&addr), "{reason}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_post_probe_is_refused_without_reaching_the_server() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let router = Router::new().route(
        "/api/retry",
        axum::routing::any(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "done"
            }
        }),
    );
    let base = serve(router).await;
    let mut probe = get_probe("/api/retry");
    probe.method = "POST".into();

    let e = observe_err(&ProbeSpec::Http(probe), &http_target(&base, &[]), TIMEOUT).await;

    match e {
        ProbeError::Failed(target, why) => {
            assert_eq!(target, "api");
            assert!(why.contains("POST"), "{why}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_malformed() {
    let router = Router::new().route("/big", get(|| async { "x".repeat(1024 * 1024 + 1) }));
    let base = serve(router).await;

    let e = observe_err(
        &ProbeSpec::Http(get_probe("/big")),
        &http_target(&base, &[]),
        TIMEOUT,
    )
    .await;

    assert!(matches!(e, ProbeError::Malformed(..)), "{e:?}");
}

// ---------------------------------------------------------------- tcp

#[tokio::test]
async fn a_tcp_probe_connects_to_a_listening_port() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let spec = ProbeSpec::Tcp(TcpProbe {
        target: "db-port".into(),
    });

    let o = observe_ok(&spec, &tcp_target(&addr)).await;

    assert_eq!(o.data["connected"], true);
    assert_eq!(o.data["address"], addr);
    assert!(o.data["connect_ms"].is_number());
}

#[tokio::test]
async fn a_tcp_probe_to_a_closed_port_observes_that_it_does_not_connect() {
    let addr = closed_address().await;
    let spec = ProbeSpec::Tcp(TcpProbe {
        target: "db-port".into(),
    });

    let o = observe_ok(&spec, &tcp_target(&addr)).await;

    assert_eq!(o.data["connected"], false);
    assert_eq!(o.data["address"], addr.as_str());
    assert!(
        o.evidence.starts_with(&format!("cannot connect to {addr}")),
        "{}",
        o.evidence
    );
}

#[tokio::test]
async fn a_tcp_probe_takes_the_address_from_an_http_target() {
    let base = serve(Router::new().route("/", get(|| async { "ok" }))).await;
    let spec = ProbeSpec::Tcp(TcpProbe {
        target: "api".into(),
    });

    let o = observe_ok(&spec, &http_target(&base, &[])).await;

    assert_eq!(o.data["address"], base.trim_start_matches("http://"));
}

// ---------------------------------------------------------------- metrics

const DLQ_METRICS: &str = "\
# HELP worker_dlq_total Messages moved to the dead-letter queue.
# TYPE worker_dlq_total counter
worker_dlq_total{workflow_id=\"a\"} 3
worker_dlq_total{workflow_id=\"b\"} 5
# HELP http_request_duration_seconds Request latency.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{route=\"/api\",le=\"0.1\"} 7
http_request_duration_seconds_bucket{route=\"/api\",le=\"0.5\"} 9
http_request_duration_seconds_bucket{route=\"/api\",le=\"+Inf\"} 10
http_request_duration_seconds_sum{route=\"/api\"} 2.5
http_request_duration_seconds_count{route=\"/api\"} 10
process_up 1 1700000000000
";

async fn metrics_server(body: &'static str, status: StatusCode) -> String {
    serve(Router::new().route("/metrics", get(move || async move { (status, body) }))).await
}

/// A worker's /metrics whose counters grow by 12 failures and 3 successes
/// between one scrape and the next (seed 004 §1.1 without Prometheus).
async fn growing_worker() -> String {
    let scrapes = Arc::new(AtomicU32::new(0));
    serve(Router::new().route(
        "/metrics",
        get(move || {
            let n = scrapes.fetch_add(1, Ordering::SeqCst);
            async move {
                let (failed, ok) = if n == 0 { (100, 400) } else { (112, 403) };
                format!(
                    "worker_failure_total{{workflow_id=\"wf-1\"}} {failed}\nworker_success_total{{workflow_id=\"wf-1\"}} {ok}\n"
                )
            }
        }),
    ))
    .await
}

#[tokio::test]
async fn a_metrics_window_measures_how_fast_counters_grow_so_failures_can_be_seen_outpacing_successes()
 {
    let base = growing_worker().await;
    let spec = ProbeSpec::Metrics(MetricsProbe {
        target: "api".into(),
        path: "/metrics".into(),
        metric: "worker_failure_total".into(),
        labels: BTreeMap::new(),
        also: vec!["worker_success_total".into()],
        window_s: Some(1),
    });

    let o = observe_ok(&spec, &http_target(&base, &[])).await;

    assert_eq!(o.data["by_metric"]["worker_failure_total"]["delta"], 12.0);
    assert_eq!(o.data["by_metric"]["worker_success_total"]["delta"], 3.0);
    assert_eq!(o.data["by_metric"]["worker_success_total"]["sum"], 403.0);
    assert_eq!(
        firstline::runbook::expect::value_at(
            &o.data,
            "ratio(by_metric.worker_failure_total.delta, by_metric.worker_success_total.delta)"
        ),
        Some(json!(4))
    );
    assert!(
        o.evidence.contains("worker_failure_total +12 over 1 s"),
        "{}",
        o.evidence
    );
}

#[tokio::test]
async fn a_metrics_probe_selects_the_sample_whose_labels_match() {
    let base = metrics_server(DLQ_METRICS, StatusCode::OK).await;

    let o = observe_ok(
        &metrics_probe("worker_dlq_total", &[("workflow_id", "b")]),
        &http_target(&base, &[]),
    )
    .await;

    assert_eq!(o.data["count"], 1);
    assert_eq!(o.data["sum"], 5.0);
    assert_eq!(o.data["max"], 5.0);
    assert_eq!(o.data["samples"][0]["labels"]["workflow_id"], "b");
    assert_eq!(o.data["samples"][0]["value"], 5.0);
    assert_eq!(o.evidence, "worker_dlq_total{workflow_id=\"b\"} 5");
}

#[tokio::test]
async fn a_metrics_probe_without_label_matchers_sums_every_series() {
    let base = metrics_server(DLQ_METRICS, StatusCode::OK).await;

    let o = observe_ok(
        &metrics_probe("worker_dlq_total", &[]),
        &http_target(&base, &[]),
    )
    .await;

    assert_eq!(o.data["count"], 2);
    assert_eq!(o.data["sum"], 8.0);
    assert_eq!(o.data["max"], 5.0);
    assert_eq!(o.evidence.lines().count(), 2, "{}", o.evidence);
}

/// Seed 004 selects `worker_dlq_total` by `workflow_id`; a value holding
/// a comma or a quote must neither split the series nor merge it with
/// another.
#[tokio::test]
async fn a_metrics_probe_matches_label_values_holding_commas_and_quotes_as_written() {
    let base = metrics_server(
        "worker_dlq_total{workflow_id=\"a,b\", reason=\"timeout, retrying\"} 2\n\
         worker_dlq_total{workflow_id=\"a\",reason=\"said \\\"no\\\"\"} 7\n",
        StatusCode::OK,
    )
    .await;
    let target = http_target(&base, &[]);

    let ab = observe_ok(
        &metrics_probe("worker_dlq_total", &[("workflow_id", "a,b")]),
        &target,
    )
    .await;
    let a = observe_ok(
        &metrics_probe("worker_dlq_total", &[("workflow_id", "a")]),
        &target,
    )
    .await;

    assert_eq!(ab.data["count"], 1, "{}", ab.data);
    assert_eq!(ab.data["sum"], 2.0);
    assert_eq!(
        ab.data["samples"][0]["labels"]["reason"],
        "timeout, retrying"
    );
    assert_eq!(a.data["count"], 1, "{}", a.data);
    assert_eq!(a.data["sum"], 7.0);
    assert_eq!(a.data["samples"][0]["labels"]["reason"], "said \"no\"");
    assert_eq!(
        a.evidence,
        "worker_dlq_total{reason=\"said \\\"no\\\"\",workflow_id=\"a\"} 7"
    );
}

#[tokio::test]
async fn a_metric_nobody_exposes_is_no_data_not_a_zero() {
    let base = metrics_server(DLQ_METRICS, StatusCode::OK).await;

    let o = observe_ok(
        &metrics_probe("worker_dlq_total", &[("workflow_id", "zzz")]),
        &http_target(&base, &[]),
    )
    .await;

    assert_eq!(o.data["count"], 0);
    assert_eq!(o.data["no_data"], true);
    assert_eq!(o.data["sum"], Value::Null, "no sample is not a sum of 0");
    assert_eq!(o.data["max"], Value::Null);
    assert_eq!(o.data["samples"], json!([]));
    assert_eq!(
        o.evidence,
        "no sample of worker_dlq_total{workflow_id=\"zzz\"}"
    );
}

#[tokio::test]
async fn histogram_buckets_sums_and_counts_are_selectable_by_their_series_names() {
    let base = metrics_server(DLQ_METRICS, StatusCode::OK).await;
    let target = http_target(&base, &[]);

    let inf = observe_ok(
        &metrics_probe(
            "http_request_duration_seconds_bucket",
            &[("le", "+Inf"), ("route", "/api")],
        ),
        &target,
    )
    .await;
    let half = observe_ok(
        &metrics_probe("http_request_duration_seconds_bucket", &[("le", "0.50")]),
        &target,
    )
    .await;
    let count = observe_ok(
        &metrics_probe("http_request_duration_seconds_count", &[]),
        &target,
    )
    .await;
    let sum = observe_ok(
        &metrics_probe("http_request_duration_seconds_sum", &[]),
        &target,
    )
    .await;
    let stamped = observe_ok(&metrics_probe("process_up", &[]), &target).await;

    assert_eq!(inf.data["sum"], 10.0);
    assert_eq!(half.data["sum"], 9.0, "le compares as a number");
    assert_eq!(count.data["sum"], 10.0);
    assert_eq!(sum.data["sum"], 2.5);
    assert_eq!(
        stamped.data["sum"], 1.0,
        "a sample with a timestamp is read"
    );
}

#[tokio::test]
async fn a_metrics_page_that_is_not_the_text_format_is_malformed() {
    let base = metrics_server(
        "<html><body><h1>502 Bad Gateway</h1></body></html>\n",
        StatusCode::OK,
    )
    .await;

    let e = observe_err(
        &metrics_probe("worker_dlq_total", &[]),
        &http_target(&base, &[]),
        TIMEOUT,
    )
    .await;

    assert!(
        matches!(e, ProbeError::Malformed(ref t, _) if t == "api"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_sample_with_a_value_that_is_not_a_number_is_malformed() {
    let base = metrics_server(
        "worker_dlq_total{workflow_id=\"a\"} three\n",
        StatusCode::OK,
    )
    .await;

    let e = observe_err(
        &metrics_probe("worker_dlq_total", &[]),
        &http_target(&base, &[]),
        TIMEOUT,
    )
    .await;

    assert!(matches!(e, ProbeError::Malformed(..)), "{e:?}");
}

#[tokio::test]
async fn a_metrics_endpoint_answering_503_is_a_failure_naming_the_status() {
    let base = metrics_server("unavailable", StatusCode::SERVICE_UNAVAILABLE).await;

    let e = observe_err(
        &metrics_probe("worker_dlq_total", &[]),
        &http_target(&base, &[]),
        TIMEOUT,
    )
    .await;

    match e {
        ProbeError::Failed(target, why) => {
            assert_eq!(target, "api");
            assert!(why.contains("HTTP 503"), "{why}");
            assert!(why.contains("/metrics"), "{why}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

// ---------------------------------------------------------------- prometheus

type Params = Arc<Mutex<Vec<HashMap<String, String>>>>;

/// A Prometheus API stand-in answering `answer` (with `status`) on both
/// query endpoints and recording the parameters it was sent.
async fn prometheus_server(status: StatusCode, answer: Value) -> (String, Params) {
    let seen: Params = Arc::default();
    let log = seen.clone();
    let handler = move |Query(q): Query<HashMap<String, String>>| {
        let log = log.clone();
        let answer = answer.clone();
        async move {
            log.lock().expect("lock").push(q);
            (status, axum::Json(answer))
        }
    };
    let router = Router::new()
        .route("/api/v1/query", get(handler.clone()))
        .route("/api/v1/query_range", get(handler));
    (serve(router).await, seen)
}

#[tokio::test]
async fn an_instant_query_returns_each_series_and_their_aggregates() {
    let answer = json!({
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"__name__": "up", "job": "worker", "instance": "w1"}, "value": [1700000000.123, "1"]},
                {"metric": {"__name__": "up", "job": "worker", "instance": "w2"}, "value": [1700000000.123, "0"]}
            ]
        }
    });
    let (base, seen) = prometheus_server(StatusCode::OK, answer).await;

    let o = observe_ok(
        &prometheus_probe("up{job=\"worker\"}", None),
        &prometheus_target(&base),
    )
    .await;

    assert_eq!(o.data["count"], 2);
    assert_eq!(o.data["min"], 0.0);
    assert_eq!(o.data["max"], 1.0);
    assert_eq!(o.data["sum"], 1.0);
    assert_eq!(o.data["series"][0]["labels"]["instance"], "w1");
    assert_eq!(o.data["series"][1]["value"], 0.0);
    assert!(
        o.evidence.contains("up{instance=\"w2\",job=\"worker\"} 0"),
        "{}",
        o.evidence
    );
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen[0].get("query").map(String::as_str),
        Some("up{job=\"worker\"}")
    );
}

#[tokio::test]
async fn an_empty_vector_has_no_series_and_null_aggregates() {
    let answer = json!({"status": "success", "data": {"resultType": "vector", "result": []}});
    let (base, _) = prometheus_server(StatusCode::OK, answer).await;

    let o = observe_ok(
        &prometheus_probe("absent_metric", None),
        &prometheus_target(&base),
    )
    .await;

    assert_eq!(o.data["count"], 0);
    assert_eq!(o.data["sum"], Value::Null);
    assert_eq!(o.data["min"], Value::Null);
    assert_eq!(o.evidence, "no series for absent_metric");
}

#[tokio::test]
async fn nan_and_infinite_values_are_null_in_the_data_and_said_so_in_the_evidence() {
    let answer = json!({
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"route": "/a"}, "value": [1700000000, "NaN"]},
                {"metric": {"route": "/b"}, "value": [1700000000, "+Inf"]},
                {"metric": {"route": "/c"}, "value": [1700000000, "0.25"]}
            ]
        }
    });
    let (base, _) = prometheus_server(StatusCode::OK, answer).await;

    let o = observe_ok(&prometheus_probe("ratio", None), &prometheus_target(&base)).await;

    assert_eq!(o.data["count"], 3);
    assert_eq!(o.data["series"][0]["value"], Value::Null);
    assert_eq!(o.data["series"][1]["value"], Value::Null);
    assert_eq!(o.data["sum"], 0.25);
    assert!(o.evidence.contains("{route=\"/a\"} NaN"), "{}", o.evidence);
    assert!(o.evidence.contains("{route=\"/b\"} +Inf"), "{}", o.evidence);
    assert!(o.evidence.contains("null"), "{}", o.evidence);
}

#[tokio::test]
async fn a_range_query_gives_first_last_and_delta_per_series() {
    let answer = json!({
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{
                "metric": {"__name__": "worker_dlq_total", "workflow_id": "b"},
                "values": [[1700000000, "10"], [1700000060, "12"], [1700000120, "15"]]
            }]
        }
    });
    let (base, seen) = prometheus_server(StatusCode::OK, answer).await;
    let range = RangeSpec {
        duration_s: 600,
        step_s: 60,
    };

    let o = observe_ok(
        &prometheus_probe("worker_dlq_total", Some(range)),
        &prometheus_target(&base),
    )
    .await;

    let series = &o.data["series"][0];
    assert_eq!(series["first"], 10.0);
    assert_eq!(series["last"], 15.0);
    assert_eq!(series["delta"], 5.0);
    assert_eq!(series["value"], 15.0);
    assert_eq!(series["values"][1], json!([1700000060.0, 12.0]));
    assert_eq!(o.data["count"], 1);
    assert_eq!(o.data["max"], 15.0);
    assert!(
        o.evidence
            .contains("worker_dlq_total{workflow_id=\"b\"} 15"),
        "{}",
        o.evidence
    );

    let seen = seen.lock().expect("lock").clone();
    let param = |k: &str| seen[0].get(k).cloned().unwrap_or_default();
    let start: f64 = param("start").parse().expect("start is a unix time");
    let end: f64 = param("end").parse().expect("end is a unix time");
    assert!(
        (end - start - 600.0).abs() < 0.01,
        "start {start}, end {end}"
    );
    assert_eq!(param("step"), "60");
    assert_eq!(param("query"), "worker_dlq_total");
}

#[tokio::test]
async fn a_prometheus_error_answer_is_a_failure_with_its_type_and_message() {
    let answer = json!({"status": "error", "errorType": "bad_data", "error": "parse error"});
    let (base, _) = prometheus_server(StatusCode::BAD_REQUEST, answer).await;

    let e = observe_err(
        &prometheus_probe("sum(", None),
        &prometheus_target(&base),
        TIMEOUT,
    )
    .await;

    match e {
        ProbeError::Failed(target, why) => {
            assert_eq!(target, "prom");
            assert_eq!(why, "bad_data: parse error");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_prometheus_answer_that_is_not_json_is_malformed() {
    let router = Router::new().route("/api/v1/query", get(|| async { "<html>login</html>" }));
    let base = serve(router).await;

    let e = observe_err(
        &prometheus_probe("up", None),
        &prometheus_target(&base),
        TIMEOUT,
    )
    .await;

    assert!(
        matches!(e, ProbeError::Malformed(ref t, _) if t == "prom"),
        "{e:?}"
    );
}
