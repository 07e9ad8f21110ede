//! Autocomplete on Discord: while someone types an incident id or a
//! runbook id into a slash command, Discord asks the bot for suggestions
//! (an APPLICATION_COMMAND_AUTOCOMPLETE interaction, signed like any
//! other) and shows what it answers. The real server, serenity's client
//! pointed at the fake Discord, interactions signed with a real key.

use serde_json::{Value, json};

use crate::discord::{DiscordApp, discord_app, nelly, register};
use crate::fake_discord::{FakeDiscord, autocomplete};
use crate::helpers::Backend;

impl DiscordApp {
    /// The suggestions for `/GROUP SUB` while `option` reads `typed`
    /// (after the `before` options already filled in).
    async fn suggest(
        &self,
        group: &str,
        sub: &str,
        before: Value,
        option: &str,
        typed: &str,
    ) -> Vec<(String, String)> {
        let mut options = before.as_array().cloned().unwrap_or_default();
        options.push(json!({"name": option, "type": 3, "value": typed, "focused": true}));
        let i = autocomplete(
            group,
            json!([{"name": sub, "type": 1, "options": options}]),
            nelly(),
        );
        let (status, answer) = self.send(&i).await;
        assert_eq!(status, 200, "{answer}");
        // APPLICATION_COMMAND_AUTOCOMPLETE_RESULT, never a deferral.
        assert_eq!(answer["type"], 8, "{answer}");
        let choices = answer["data"]["choices"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("choices: {answer}"));
        assert!(choices.len() <= 25, "{answer}");
        choices
            .iter()
            .map(|c| {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                let value = c["value"].as_str().unwrap_or_default().to_string();
                assert!((1..=100).contains(&name.chars().count()), "{c}");
                assert!((1..=100).contains(&value.chars().count()), "{c}");
                (name, value)
            })
            .collect()
    }

    /// Types `line` on the console as Nelly; it must be taken.
    pub(crate) async fn console(&self, line: &str) {
        let (status, answer) = self.app.command("Nelly", line).await;
        assert_eq!(status, 200, "{line}: {answer}");
        assert_eq!(answer["ok"], true, "{line}: {answer}");
    }
}

fn values(choices: &[(String, String)]) -> Vec<&str> {
    choices.iter().map(|(_, v)| v.as_str()).collect()
}

async fn incidents_are_suggested_open_first_newest_first(backend: Backend) {
    let Some(d) = discord_app(backend, &[]).await else {
        return;
    };
    d.console("/incident declare checkout is down --sev P1")
        .await;
    d.console("/incident declare queue backlog grows --sev P2")
        .await;
    let long = format!("checkout {}", "very slow ".repeat(30));
    d.console(&format!("/incident declare {long} --sev P3"))
        .await;
    d.console("/incident resolve INC-2 drained").await;

    // Nothing typed yet: every incident, open ones first, newest first.
    let all = d.suggest("incident", "ack", json!([]), "id", "").await;
    assert_eq!(values(&all), ["INC-3", "INC-1", "INC-2"], "{all:?}");
    assert_eq!(all[1].0, "INC-1 · P1 · checkout is down (triggered)");
    assert_eq!(all[2].0, "INC-2 · P2 · queue backlog grows (resolved)");
    // A long title is cut to Discord's 100 characters, the id kept.
    assert!(
        all[0].0.starts_with("INC-3 · P3 · checkout very slow"),
        "{all:?}"
    );
    assert!(all[0].0.ends_with('…'), "{all:?}");

    // What is typed narrows it: words of the title, or the id.
    let checkout = d
        .suggest("incident", "ack", json!([]), "id", "Checkout")
        .await;
    assert_eq!(values(&checkout), ["INC-3", "INC-1"], "{checkout:?}");
    let by_id = d
        .suggest("incident", "note", json!([]), "id", "inc-2")
        .await;
    assert_eq!(values(&by_id), ["INC-2"], "{by_id:?}");
    let none = d
        .suggest("incident", "ack", json!([]), "id", "payments")
        .await;
    assert!(none.is_empty(), "{none:?}");

    // The incident of `/runbook run` is suggested too, after its runbook.
    let run = d
        .suggest(
            "runbook",
            "run",
            json!([{"name": "runbook-id", "type": 3, "value": "workflow-events-failed"}]),
            "incident-id",
            "queue",
        )
        .await;
    assert_eq!(values(&run), ["INC-2"], "{run:?}");
}

#[tokio::test]
async fn incident_ids_are_suggested_open_first_newest_first_narrowed_by_what_is_typed() {
    incidents_are_suggested_open_first_newest_first(Backend::Sqlite).await;
}

#[tokio::test]
async fn incident_ids_are_suggested_from_postgres_too() {
    incidents_are_suggested_open_first_newest_first(Backend::Postgres).await;
}

#[tokio::test]
async fn runbook_ids_are_suggested_from_the_catalog_with_their_titles() {
    let Some(d) = discord_app(Backend::Sqlite, &[]).await else {
        return;
    };
    let all = d
        .suggest("runbook", "show", json!([]), "runbook-id", "")
        .await;
    assert!(!all.is_empty());
    assert!(all.len() <= 25);
    for (name, value) in &all {
        assert!(name.starts_with(&format!("{value} · ")), "{name}");
    }

    let failed = d
        .suggest("runbook", "run", json!([]), "runbook-id", "events-FAILED")
        .await;
    assert!(
        values(&failed).contains(&"workflow-events-failed"),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .all(|(n, _)| n.to_lowercase().contains("events-failed")),
        "{failed:?}"
    );
    // By the English title, not only the id.
    let by_title = d
        .suggest(
            "runbook",
            "show",
            json!([]),
            "runbook-id",
            "investigate reason_class=infra",
        )
        .await;
    assert_eq!(
        values(&by_title),
        ["workflow-events-failed"],
        "{by_title:?}"
    );
    // Each suggestion is a runbook the command takes.
    let (status, answer) = d
        .app
        .command("Nelly", &format!("/runbook show {}", all[0].1))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_ne!(answer["ok"], false, "{answer}");

    let unknown = d
        .suggest("runbook", "show", json!([]), "runbook-id", "no such thing")
        .await;
    assert!(unknown.is_empty(), "{unknown:?}");
}

#[tokio::test]
async fn an_option_without_suggestions_gets_an_empty_list_not_an_error() {
    let Some(d) = discord_app(Backend::Sqlite, &[]).await else {
        return;
    };
    let none = d
        .suggest("incident", "declare", json!([]), "title", "check")
        .await;
    assert!(none.is_empty(), "{none:?}");
}

/// `firstline discord register` against a fresh fake: the commands PUT.
async fn registered_commands() -> Vec<Value> {
    let discord = FakeDiscord::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = register(&discord, &dir).await;
    assert_eq!(code, 0, "{stderr}");
    let puts = discord.command_puts();
    assert_eq!(puts.len(), 1);
    puts[0].2.as_array().cloned().unwrap_or_default()
}

/// The option `name` of `/group sub` (or of `/group` when `sub` is empty).
fn option<'a>(commands: &'a [Value], group: &str, sub: &str, name: &str) -> &'a Value {
    let command = commands
        .iter()
        .find(|c| c["name"] == group)
        .unwrap_or_else(|| panic!("no /{group}"));
    let options = match sub {
        "" => &command["options"],
        _ => &command["options"]
            .as_array()
            .and_then(|subs| subs.iter().find(|s| s["name"] == sub))
            .unwrap_or_else(|| panic!("no /{group} {sub}"))["options"],
    };
    options
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in /{group} {sub}"))
}

#[tokio::test]
async fn registered_commands_ask_for_suggestions_on_incident_and_runbook_ids_only() {
    let commands = registered_commands().await;
    for (group, sub, name) in [
        ("incident", "ack", "id"),
        ("incident", "resolve", "id"),
        ("incident", "sev", "id"),
        ("runbook", "show", "runbook-id"),
        ("runbook", "run", "runbook-id"),
        ("runbook", "run", "incident-id"),
        ("action", "list", "id"),
    ] {
        assert_eq!(
            option(&commands, group, sub, name)["autocomplete"],
            true,
            "/{group} {sub} {name}"
        );
    }
    // Choices and autocomplete never on one option (Discord refuses that),
    // and free text is not suggested.
    let severity = option(&commands, "incident", "sev", "severity");
    assert_ne!(severity["autocomplete"], true, "{severity}");
    assert!(severity["choices"].is_array(), "{severity}");
    let title = option(&commands, "incident", "declare", "title");
    assert_ne!(title["autocomplete"], true, "{title}");
}
