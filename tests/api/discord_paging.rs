//! Paging on Discord: a contact with a Discord user id is paged by a
//! direct message (a DM channel opened for them, the page sent in it) or
//! by a mention in the incident's post that may ping only them, through
//! serenity's REST client against the fake Discord.

use serde_json::{Value, json};

use crate::discord::{DiscordApp, USER_ID, WAIT, content, discord_app_with_file, nelly};
use crate::fake_discord::{BOT_TOKEN, FakeDiscord, Sent, command};
use crate::helpers::Backend;

/// Ann is paged by DM, Bob by a mention, and the channel with @here; all
/// at P1's only step.
const ANN: &str = "80351110224678913";
const BOB: &str = "80351110224678914";

fn config() -> String {
    format!(
        r#"
[contacts.ann]
name = "Ann"
timezone = "UTC"
availability = "24/7"
discord = "{ANN}"
page_via = ["chat_dm"]

[contacts.bob]
name = "Bob"
timezone = "UTC"
availability = "24/7"
discord = "{BOB}"
page_via = ["chat_mention"]

[escalation.P1]
steps = [{{ page = ["ann", "bob", "channel"], ack_within = "60s" }}]
"#
    )
}

async fn paging_app(backend: Backend) -> Option<DiscordApp> {
    discord_app_with_file(backend, Some(&config()), &[]).await
}

/// The messages sent in the DM channels opened for `user`.
fn dms_to(f: &FakeDiscord, user: &str) -> Vec<Sent> {
    f.dms()
        .into_iter()
        .filter(|(to, _)| to == user)
        .flat_map(|(_, channel)| f.messages_in(&channel))
        .collect()
}

/// Messages (not DMs) whose text starts by mentioning `user`.
fn mentions_of(f: &FakeDiscord, user: &str) -> Vec<Sent> {
    let dm_channels: Vec<String> = f.dms().into_iter().map(|(_, c)| c).collect();
    f.messages()
        .into_iter()
        .filter(|m| !dm_channels.contains(&m.channel))
        .filter(|m| {
            m.body["content"]
                .as_str()
                .is_some_and(|t| t.starts_with(&format!("<@{user}> ")))
        })
        .collect()
}

fn text(m: &Sent) -> &str {
    m.body["content"].as_str().unwrap_or_default()
}

/// Waits until INC-1's timeline has a page event containing `needle`.
async fn wait_page_event(d: &DiscordApp, needle: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let tl = d.timeline("INC-1").await;
        if tl
            .iter()
            .any(|e| e["kind"] == "page" && e["text"].as_str().unwrap_or("").contains(needle))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no page event with {needle:?}: {tl:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn escalation_dms_one_contact_and_mentions_the_other(backend: Backend) {
    let Some(d) = paging_app(backend).await else {
        return;
    };
    let (status, answer) = d
        .incident(
            "declare",
            json!([
                {"name": "title", "type": 3, "value": "checkout is down"},
                {"name": "sev", "type": 3, "value": "P1"}
            ]),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(content(&answer).contains("INC-1"), "{answer}");

    // Ann: a DM channel opened for her, the page in it.
    assert!(
        d.discord
            .wait_for(|f| !dms_to(f, ANN).is_empty(), WAIT)
            .await,
        "no DM to Ann: opened {:?}, sent {:?}",
        d.discord.dms(),
        d.discord.messages()
    );
    let dm = &dms_to(&d.discord, ANN)[0];
    assert!(
        text(dm).contains("INC-1 needs you: checkout is down"),
        "{}",
        dm.body
    );
    assert!(
        text(dm).contains("/incident ack INC-1"),
        "says how to stop it: {}",
        dm.body
    );
    assert_eq!(
        dm.body["allowed_mentions"],
        json!({"parse": [], "users": [], "roles": []}),
        "a DM pings nobody else: {}",
        dm.body
    );
    assert!(!text(dm).contains(BOT_TOKEN));
    wait_page_event(&d, "paged ann via chat_dm").await;

    // Bob: mentioned by id, and only he may be pinged by it.
    assert!(
        d.discord
            .wait_for(|f| !mentions_of(f, BOB).is_empty(), WAIT)
            .await,
        "no mention of Bob: {:?}",
        d.discord.messages()
    );
    let mention = &mentions_of(&d.discord, BOB)[0];
    assert!(
        text(mention).contains("INC-1 needs you: checkout is down"),
        "{}",
        mention.body
    );
    assert_eq!(
        mention.body["allowed_mentions"],
        json!({"parse": [], "users": [BOB], "roles": []}),
        "{}",
        mention.body
    );
    wait_page_event(&d, "paged bob via chat_mention").await;

    // The channel: @here, which only that page may ping.
    let here = |f: &FakeDiscord| {
        f.messages()
            .into_iter()
            .filter(|m| text(m).starts_with("@here "))
            .collect::<Vec<_>>()
    };
    assert!(
        d.discord.wait_for(|f| !here(f).is_empty(), WAIT).await,
        "no @here: {:?}",
        d.discord.messages()
    );
    let here = here(&d.discord);
    assert_eq!(here.len(), 1, "{here:?}");
    assert_eq!(
        here[0].body["allowed_mentions"],
        json!({"parse": ["everyone"], "users": [], "roles": []}),
        "{}",
        here[0].body
    );
    wait_page_event(&d, "paged the channel via chat_mention").await;

    // Each was paged the one way their contact says, once.
    assert!(dms_to(&d.discord, BOB).is_empty(), "{:?}", d.discord.dms());
    assert!(mentions_of(&d.discord, ANN).is_empty());
    assert_eq!(d.discord.dms().len(), 1, "{:?}", d.discord.dms());
    assert_eq!(mentions_of(&d.discord, BOB).len(), 1);
    // Nothing else the bot posted may ping anyone.
    for m in d.discord.messages() {
        let t = text(&m);
        if t.starts_with(&format!("<@{BOB}> ")) || t.starts_with("@here ") {
            continue;
        }
        assert_eq!(
            m.body["allowed_mentions"],
            json!({"parse": [], "users": [], "roles": []}),
            "{}: {}",
            m.channel,
            m.body
        );
    }
}

#[tokio::test]
async fn an_escalation_step_dms_a_discord_contact_and_mentions_another_pinging_only_them() {
    escalation_dms_one_contact_and_mentions_the_other(Backend::Sqlite).await;
}

#[tokio::test]
async fn discord_dms_and_mentions_work_on_postgres_too() {
    escalation_dms_one_contact_and_mentions_the_other(Backend::Postgres).await;
}

#[tokio::test]
async fn a_page_typed_in_discord_naming_a_contacts_user_sends_them_a_dm() {
    let Some(d) = paging_app(Backend::Sqlite).await else {
        return;
    };
    // P3 has no policy here: nobody is paged but by hand.
    let (status, _) = d
        .app
        .command("sam", "/incident declare disk almost full --sev P3")
        .await;
    assert_eq!(status, 200);

    // `/page who:@Ann message:…`: Discord sends the picked user's id.
    let (page, _) = command(
        "page",
        json!([
            {"name": "who", "type": 6, "value": ANN},
            {"name": "message", "type": 3, "value": "INC-1 the disk fills in an hour"}
        ]),
        nelly(),
    );
    let (status, answer) = d.send(&page).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(content(&answer), "paging ann for INC-1", "{answer}");

    assert!(
        d.discord
            .wait_for(|f| !dms_to(f, ANN).is_empty(), WAIT)
            .await,
        "no DM to Ann: {:?} {:?}",
        d.discord.dms(),
        d.discord.messages()
    );
    let dm = &dms_to(&d.discord, ANN)[0];
    let said = text(dm);
    assert!(said.contains("INC-1 needs you: disk almost full"), "{said}");
    assert!(said.contains("the disk fills in an hour"), "{said}");
    assert!(
        said.contains(&format!("paged by Nelly (discord:{USER_ID})")),
        "{said}"
    );
    wait_page_event(&d, "paged ann via chat_dm").await;
    let tl: Vec<Value> = d.timeline("INC-1").await;
    assert!(
        tl.iter()
            .any(|e| e["kind"] == "page"
                && e["actor"] == format!("Nelly (discord:{USER_ID})").as_str()),
        "{tl:#?}"
    );
}
