//! Restart safety with the real binary: accept alerts, kill -9, start again.
//! Nothing accepted is lost, no post appears twice, the outbox resumes.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::am_payload;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start(dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_firstline"))
        .arg("serve")
        .current_dir(dir)
        .env("FIRSTLINE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("FIRSTLINE_CHAT__CONSOLE_STDIN", "false")
        .env("FIRSTLINE_LOG__LEVEL", "warn")
        .env_remove("FIRSTLINE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start firstline")
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("firstline did not become ready at {base}");
}

#[tokio::test]
async fn a_killed_server_restarts_with_everything_it_accepted_and_no_duplicate_posts() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut first = start(dir.path(), port);
    wait_ready(&client, &base).await;

    // 20 groups -> 20 incidents -> 20 posts, then an unclean kill, likely
    // while some posts are still in the outbox.
    let mut accepted = 0;
    for i in 0..20 {
        let service = format!("svc-{i}");
        let body = am_payload(
            &format!("g{i}"),
            &[(
                "Down",
                &service,
                "critical",
                "a:1",
                "firing",
                "2026-11-23T00:00:00Z",
            )],
        );
        let r = client
            .post(format!("{base}/hooks/alertmanager"))
            .body(body)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            accepted += 1;
        }
    }
    first.kill().expect("kill -9");
    let _ = first.wait();
    assert_eq!(accepted, 20);

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut second = start(dir.path(), port);
    wait_ready(&client, &base).await;
    // Redelivery of everything (Alertmanager re-sends whole groups) is
    // recognised, not doubled.
    let body = am_payload(
        "g0",
        &[(
            "Down",
            "svc-0",
            "critical",
            "a:1",
            "firing",
            "2026-11-23T00:00:00Z",
        )],
    );
    let again: Value = client
        .post(format!("{base}/hooks/alertmanager"))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let mut posts = Vec::new();
    for _ in 0..200 {
        let body: Value = client
            .get(format!("{base}/console/posts?limit=1000"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        posts = body["posts"].as_array().cloned().unwrap_or_default();
        if posts.len() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let incidents: Value = client
        .get(format!("{base}/api/incidents?state=all"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    second.kill().expect("stop");
    let _ = second.wait();

    assert_eq!(again["status"], "duplicate");
    assert_eq!(
        incidents["incidents"].as_array().map(Vec::len),
        Some(20),
        "nothing accepted was lost"
    );
    assert_eq!(
        posts.len(),
        20,
        "one post per incident, none twice: {posts:?}"
    );
    let mut outbox_ids: Vec<_> = posts
        .iter()
        .map(|p| p["outbox_id"].as_i64().unwrap())
        .collect();
    outbox_ids.dedup();
    assert_eq!(outbox_ids.len(), 20);
    assert!(
        metrics.contains("firstline_outbox_pending 0"),
        "the outbox drained after the restart:\n{metrics}"
    );
}
