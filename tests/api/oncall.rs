//! `/oncall` and `/page` through the console, with contacts and rotations
//! from a configuration file.

use chrono::{Duration, SecondsFormat, Utc};
use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_with_file};

fn reply(body: &Value) -> &str {
    body["reply"].as_str().unwrap_or("")
}

/// Two rotations: `primary` alternates ann and bob daily; `db` is the DBA
/// alone, with ann standing in from an hour ago until two hours from now.
fn config(stand_in_until: chrono::DateTime<Utc>) -> String {
    let from = (Utc::now() - Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let to = stand_in_until.to_rfc3339_opts(SecondsFormat::Secs, true);
    format!(
        r#"
[contacts.ann]
name = "Ann"
timezone = "Europe/Paris"
availability = "24/7"

[contacts.bob]
timezone = "America/New_York"
availability = "business_hours"
business_hours = ["Mon-Fri 09:00-18:00"]

[contacts.dba]
name = "データベース管理者"
timezone = "Asia/Tokyo"
availability = "on_call"

[rotations.primary]
members = ["ann", "bob"]
handoff = "daily 09:00 Europe/Paris"

[rotations.db]
members = ["dba"]
handoff = "weekly Mon 10:00 Asia/Tokyo"
overrides = [{{ who = "ann", from = "{from}", to = "{to}" }}]
"#
    )
}

#[tokio::test]
async fn oncall_names_who_is_on_call_per_rotation_and_who_is_next_in_the_servers_zone() {
    let until = Utc::now() + Duration::hours(2);
    let app = spawn_app_with_file(
        &config(until),
        &[("FIRSTLINE_SERVER__TIMEZONE", "Asia/Tokyo")],
    )
    .await;

    let (status, body) = app.command("sam", "/oncall").await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    let text = reply(&body);
    assert!(text.contains("times in Asia/Tokyo"), "{text}");
    let until_local = until
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .format("%Y-%m-%d %H:%M:%S JST")
        .to_string();
    assert!(
        text.contains(&format!(
            "• db: Ann (ann) (standing in until {until_local})\n  next: データベース管理者 (dba) from {until_local}"
        )),
        "{text}"
    );
    // ann and bob alternate: whoever is on now, the other is next.
    let primary = text
        .lines()
        .skip_while(|l| !l.starts_with("• primary:"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        primary.starts_with("• primary: Ann (ann)\n  next: bob from ")
            || primary.starts_with("• primary: bob\n  next: Ann (ann) from "),
        "{text}"
    );
    assert!(primary.ends_with(" JST"), "{primary}");
}

#[tokio::test]
async fn oncall_with_a_rotation_names_only_that_one_and_an_unknown_one_lists_them() {
    let app = spawn_app_with_file(&config(Utc::now() + Duration::hours(2)), &[]).await;

    let (_, one) = app.command("sam", "/oncall db").await;
    let (_, unknown) = app.command("sam", "/oncall secondary").await;

    assert!(reply(&one).contains("• db: Ann (ann)"), "{one}");
    assert!(!reply(&one).contains("primary"), "{one}");
    assert_eq!(unknown["ok"], false, "{unknown}");
    assert_eq!(
        reply(&unknown),
        "no rotation \"secondary\"; rotations: db, primary"
    );
}

#[tokio::test]
async fn oncall_without_rotations_says_how_to_configure_them() {
    let app = spawn_app().await;

    let (status, body) = app.command("sam", "/oncall").await;

    assert_eq!(status, 200);
    let text = reply(&body);
    assert!(text.contains("No rotations are configured"), "{text}");
    assert!(text.contains("[rotations.NAME]"), "{text}");
    assert!(text.contains("firstline check-config"), "{text}");
}

#[tokio::test]
async fn page_outside_an_incident_asks_which_incident_and_an_unknown_name_lists_who_can_be_paged() {
    let until = Utc::now() + Duration::hours(2);
    let app = spawn_app_with_file(&config(until), &[]).await;

    let (_, body) = app.command("sam", "/page @ann the database is down").await;
    assert_eq!(body["ok"], false, "{body}");
    assert!(reply(&body).contains("which incident?"), "{body}");

    let (_, body) = app
        .command("sam", "/incident declare checkout down --sev P2")
        .await;
    assert_eq!(body["ok"], true, "{body}");
    let (_, body) = app.command("sam", "/page nobody INC-1 help").await;
    assert_eq!(body["ok"], false, "{body}");
    let text = reply(&body);
    assert!(text.contains("nobody called \"nobody\""), "{text}");
    assert!(text.contains("@ann, @bob, @dba, db, primary"), "{text}");
}

#[tokio::test]
async fn oncall_shows_hand_off_times_in_the_callers_own_zone_when_they_are_a_contact() {
    let until = Utc::now() + Duration::hours(2);
    let app = spawn_app_with_file(
        &config(until),
        &[("FIRSTLINE_SERVER__TIMEZONE", "Asia/Tokyo")],
    )
    .await;

    // ann is a contact in Europe/Paris; her console name is her key.
    let (_, body) = app.command("ann", "/oncall db").await;

    assert_eq!(body["ok"], true, "{body}");
    let text = reply(&body);
    assert!(text.contains("times in Europe/Paris"), "{text}");
    let until_paris = until
        .with_timezone(&chrono_tz::Europe::Paris)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string();
    assert!(text.contains(&until_paris), "{text}");
}
