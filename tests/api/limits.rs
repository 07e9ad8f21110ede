//! Limits a real deployment needs: slow, idle or too many clients never
//! take the server from alert senders; oversized or malformed requests get
//! JSON answers that name the problem.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, down_group, spawn_app_on};

fn host_port(addr: &str) -> String {
    addr.trim_start_matches("http://").to_string()
}

/// Reads what the server sends until it closes (or `limit` passes):
/// (the text, whether it closed).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (String::from_utf8_lossy(&out).into_owned(), read.is_ok())
}

async fn connect(target: &str) -> TcpStream {
    TcpStream::connect(target).await.expect("connect")
}

#[tokio::test]
async fn three_hundred_idle_connections_do_not_keep_alerts_or_healthz_waiting() {
    let app = spawn_app_on(Backend::Sqlite, &[]).await.expect("sqlite");
    let target = host_port(&app.addr);
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect(&target).await);
    }

    let (health, _) = app.get_text("/healthz").await;
    let (status, _) = app.post_hook("alertmanager", down_group(1)).await;

    assert_eq!((health, status), (200, 200));
    assert_eq!(app.incident_ids().await, ["INC-1"]);
    drop(idle);
}

#[tokio::test]
async fn a_client_that_sends_its_headers_too_slowly_is_disconnected() {
    let app = spawn_app_on(
        Backend::Sqlite,
        &[("FIRSTLINE_SERVER__HEADER_TIMEOUT_MS", "300")],
    )
    .await
    .expect("sqlite");
    let mut slow = connect(&host_port(&app.addr)).await;
    slow.write_all(b"POST /hooks/alertmanager HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");

    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(10)).await;

    assert!(closed, "the server still waits for the rest of the headers");
    let (health, _) = app.get_text("/healthz").await;
    assert_eq!(health, 200);
}

#[tokio::test]
async fn a_body_that_stalls_is_answered_with_an_error_naming_the_body() {
    let app = spawn_app_on(
        Backend::Sqlite,
        &[("FIRSTLINE_SERVER__BODY_TIMEOUT_MS", "300")],
    )
    .await
    .expect("sqlite");
    let mut slow = connect(&host_port(&app.addr)).await;
    slow.write_all(
        b"POST /hooks/alertmanager HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"version\":",
    )
    .await
        .expect("write");

    let (answer, _) = read_until_closed(&mut slow, Duration::from_secs(5)).await;

    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"field\":\"body\""), "{answer}");
}

#[tokio::test]
async fn a_connection_beyond_the_cap_is_told_503_at_once_and_the_rest_go_on() {
    let app = spawn_app_on(
        Backend::Sqlite,
        &[("FIRSTLINE_SERVER__MAX_CONNECTIONS", "4")],
    )
    .await
    .expect("sqlite");
    let target = host_port(&app.addr);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(&target).await);
    }
    // Let the server accept them before the fifth.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut fifth = connect(&target).await;
    let (answer, closed) = read_until_closed(&mut fifth, Duration::from_secs(5)).await;

    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(closed);
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (health, _) = app.get_text("/healthz").await;
    assert_eq!(health, 200);
}

#[tokio::test]
async fn console_routes_refuse_oversized_bodies_with_413_like_the_hooks() {
    let app = spawn_app_on(
        Backend::Sqlite,
        &[("FIRSTLINE_SERVER__MAX_BODY_BYTES", "2048")],
    )
    .await
    .expect("sqlite");
    let big = serde_json::json!({"user": "ana", "text": "x".repeat(4096)});

    let r = app
        .client
        .post(format!("{}/console/commands", app.addr))
        .json(&big)
        .send()
        .await
        .expect("request");

    assert_eq!(r.status().as_u16(), 413);
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("server.max_body_bytes"),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_json_and_bad_limits_are_refused() {
    let app = spawn_app_on(Backend::Sqlite, &[]).await.expect("sqlite");

    let (missing, missing_body) = app.get_json("/no/such/route").await;
    let wrong = app
        .client
        .delete(format!("{}/api/incidents", app.addr))
        .send()
        .await
        .expect("request");
    let wrong_status = wrong.status().as_u16();
    let wrong_body: serde_json::Value = wrong.json().await.expect("json");
    let (negative, negative_body) = app.get_json("/api/incidents?limit=-5").await;
    let (posts, _) = app.get_json("/console/posts?limit=0").await;

    assert_eq!(missing, 404);
    assert!(
        missing_body["error"]
            .as_str()
            .unwrap_or("")
            .contains("/no/such/route")
    );
    assert_eq!(wrong_status, 405);
    assert!(
        wrong_body["error"]
            .as_str()
            .unwrap_or("")
            .contains("DELETE")
    );
    assert_eq!(negative, 400);
    assert!(
        negative_body["error"]
            .as_str()
            .unwrap_or("")
            .contains("limit=-5"),
        "{negative_body}"
    );
    assert_eq!(posts, 400);
}

#[tokio::test]
async fn out_of_file_descriptors_new_connections_get_503_not_a_silent_wait() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    // The real binary with few descriptors: enough to start, not for 200
    // connections.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 96 && exec {} serve",
            env!("CARGO_BIN_EXE_firstline")
        ))
        .current_dir(dir.path())
        .env("FIRSTLINE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("FIRSTLINE_CHAT__CONSOLE_STDIN", "false")
        .env("FIRSTLINE_LOG__LEVEL", "error")
        .env_remove("FIRSTLINE_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start firstline");
    let target = format!("127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("http://{target}/readyz")).send().await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "firstline did not start with 96 descriptors");

    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(connect(&target).await);
    }
    let mut last = connect(&target).await;
    let (answer, closed) = read_until_closed(&mut last, Duration::from_secs(10)).await;
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = client
        .get(format!("http://{target}/healthz"))
        .send()
        .await
        .map(|r| r.status().as_u16());
    let _ = child.kill();
    let _ = child.wait();

    assert!(closed, "the connection was left waiting: {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert_eq!(
        health.ok(),
        Some(200),
        "serving again once descriptors are free"
    );
}
