//! What Discord POSTs to the interactions endpoint (`http::discord`):
//! checked, translated into the `commands` grammar's text, acted on by
//! `chat::handler`, and answered.
//!
//! - [`verify`]: the Ed25519 signature over timestamp + raw body (serenity's
//!   `Verifier`), then the timestamp's age, which the verifier does not
//!   look at: older than `chat.discord.max_age_s`, or more than a minute
//!   ahead, is refused. Nothing is parsed before this passes.
//! - [`command_line`]: a slash command's name, subcommand and options as
//!   the line a person would type (`/incident ack INC-7`); [`button_line`]
//!   likewise for a press of one of the bot's buttons (`chat::buttons`).
//! - [`Interactions::answer`]: PING gets PONG; a command or a button runs
//!   as the Discord user who used it (identity `discord:<user id>`), and
//!   one typed in an incident's thread without an id means that incident
//!   (as in Slack's incident channel, or with the console's `incident`). A
//!   reply ready within `chat.discord.answer_within_ms` is the response
//!   itself; otherwise the response defers ("thinking…") and the reply is
//!   edited in through serenity's REST client when done.
//! - Autocomplete (type 4): suggestions while an incident id or a runbook
//!   id is typed (the options `register` marks), answered at once from
//!   the store and the catalog; Discord does not let it be deferred.
//!
//! Answers are ephemeral (only the caller sees them), as on Slack: what
//! changes an incident goes on its timeline and thread as well.

use std::time::Duration;

use serde_json::{Value, json};
use serenity::builder::{CreateAllowedMentions, EditInteractionResponse};
use serenity::interactions_endpoint::Verifier;
use serenity::model::application::{
    CommandDataOption, CommandDataOptionValue, CommandInteraction, CommandType,
    ComponentInteraction, ComponentInteractionDataKind, Interaction,
};
use serenity::model::id::ChannelId;
use serenity::model::user::User;
use tracing::warn;

use super::Discord;
use super::register::Completes;
use crate::approval::Identity;
use crate::chat::handler::{self, CommandContext, Reply};
use crate::domain::State;
use crate::domain::incident::Incident;
use crate::store::IncidentFilter;
use crate::text::clip;

/// `X-Signature-Ed25519`: the signature, 128 hex digits.
pub const SIGNATURE_HEADER: &str = "x-signature-ed25519";
/// `X-Signature-Timestamp`: Unix seconds, signed with the body.
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";

/// How far ahead of our clock a timestamp may be (clock skew).
pub const MAX_AHEAD: Duration = Duration::from_secs(60);

/// Discord's longest message content.
const CONTENT_CHARS: usize = 2000;

/// Message flag: only the user who used the command sees the answer.
const EPHEMERAL: u64 = 1 << 6;

/// Discord's most suggestions in an autocomplete answer, and the longest
/// name and value of one.
const CHOICES: usize = 25;
const CHOICE_CHARS: usize = 100;
/// How long suggestions may take: Discord gives up on an answer after 3 s
/// and an autocomplete cannot be deferred.
const AUTOCOMPLETE_WITHIN: Duration = Duration::from_millis(2_000);
/// Incidents looked through for suggestions, open ones and all.
const AUTOCOMPLETE_SCAN: i64 = 200;

/// Why a request is not taken as Discord's: each is a 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    #[error("unsigned: X-Signature-Ed25519 and X-Signature-Timestamp are required")]
    Missing,
    #[error("X-Signature-Ed25519 is not 128 hex digits")]
    MalformedSignature,
    #[error(
        "the signature does not match the timestamp and body (another application's key, or either was changed)"
    )]
    BadSignature,
    #[error("X-Signature-Timestamp is not a time in Unix seconds")]
    MalformedTimestamp,
    #[error("the request was signed {age_s} s ago; older than {max_s} s is refused as a replay")]
    Stale { age_s: i64, max_s: u64 },
    #[error("the request was signed {ahead_s} s in the future; more than 60 s ahead is refused")]
    Ahead { ahead_s: i64 },
}

/// Whether `body` was signed by the application's key at `timestamp`, and
/// `timestamp` is within `max_age` before `now_ms` (and at most a minute
/// after it). Only the first problem found is named.
pub fn verify(
    verifier: &Verifier,
    max_age: Duration,
    now_ms: i64,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
) -> Result<(), Unverified> {
    let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
        return Err(Unverified::Missing);
    };
    if signature.len() != 128 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Unverified::MalformedSignature);
    }
    verifier
        .verify(signature, timestamp, body)
        .map_err(|()| Unverified::BadSignature)?;
    // Signed, so Discord wrote it; still, only a number is a time.
    let signed_s = timestamp
        .parse::<i64>()
        .map_err(|_| Unverified::MalformedTimestamp)?;
    let now_s = now_ms.div_euclid(1000);
    let age_s = now_s.saturating_sub(signed_s);
    let max_s = max_age.as_secs();
    if age_s > i64::try_from(max_s).unwrap_or(i64::MAX) {
        return Err(Unverified::Stale { age_s, max_s });
    }
    if -age_s > MAX_AHEAD.as_secs() as i64 {
        return Err(Unverified::Ahead { ahead_s: -age_s });
    }
    Ok(())
}

/// A slash command as its text line: `/name`, then subcommand group and
/// subcommand names, then the options' values in the order Discord lists
/// them (the order the command declares them), free text as typed. An
/// option the grammar spells as a flag (`--sev P1` in the help table's
/// usage) is written as one, after the rest. `None` for a value that
/// cannot be written (an attachment).
pub fn command_line(name: &str, options: &[CommandDataOption]) -> Option<String> {
    let mut words = vec![format!("/{name}")];
    let mut path = name.to_string();
    let mut flags = Vec::new();
    let mut options = options;
    // Descend through a subcommand group and a subcommand, if there.
    while let Some((
        sub,
        CommandDataOptionValue::SubCommand(inner) | CommandDataOptionValue::SubCommandGroup(inner),
    )) = options.first().map(|o| (&o.name, &o.value))
    {
        words.push(sub.clone());
        path = format!("{path} {sub}");
        options = inner;
    }
    // The usage line's words (`register::usage_options`, the same the
    // commands were registered from): values in its order, whatever order
    // Discord sent them in (it wants required options first), flags after.
    let usage = super::register::usage_options(&path);
    let mut given: Vec<(usize, String)> = Vec::new();
    for option in options {
        let declared = usage.iter().position(|u| u.name == option.name);
        let is_flag = declared.is_some_and(|i| usage[i].flag);
        let value = match &option.value {
            CommandDataOptionValue::String(s) => escape_quotes(s),
            CommandDataOptionValue::Integer(i) => i.to_string(),
            CommandDataOptionValue::Number(n) => n.to_string(),
            CommandDataOptionValue::User(id) => format!("<@{id}>"),
            CommandDataOptionValue::Channel(id) => format!("<#{id}>"),
            CommandDataOptionValue::Role(id) => format!("<@&{id}>"),
            CommandDataOptionValue::Mentionable(id) => format!("<@{id}>"),
            CommandDataOptionValue::Boolean(b) => {
                if *b && is_flag {
                    flags.push(format!("--{}", option.name));
                }
                continue;
            }
            _ => return None,
        };
        if value.trim().is_empty() {
            continue;
        }
        if is_flag {
            flags.push(format!("--{} {value}", option.name));
        } else {
            // Words the usage line does not have keep Discord's order, last.
            given.push((declared.unwrap_or(usize::MAX), value));
        }
    }
    given.sort_by_key(|(at, _)| *at);
    words.extend(given.into_iter().map(|(_, v)| v));
    words.extend(flags);
    Some(words.join(" "))
}

/// Free text keeps its quotes: the grammar groups words in quotes, so a
/// quote typed into a note is made literal.
fn escape_quotes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '\u{201C}' | '\u{201D}') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A button's `custom_id` for the bot's button `id` (`chat::buttons`)
/// with `value`: `incident_ack:INC-7`.
pub fn custom_id(id: &str, value: &str) -> String {
    format!("{id}:{value}")
}

/// The command a press of the button with `custom_id` stands for; `None`
/// when it is not one of the bot's.
pub fn button_line(custom_id: &str) -> Option<String> {
    let (id, value) = custom_id.split_once(':')?;
    crate::chat::buttons::command_line(id, value)
}

/// The name a person goes by in this server: their nickname, else their
/// display name, else their username.
fn display_name(nick: Option<&str>, user: &User) -> String {
    nick.filter(|n| !n.trim().is_empty())
        .or(user.global_name.as_deref().filter(|n| !n.trim().is_empty()))
        .unwrap_or(&user.name)
        .trim()
        .to_string()
}

/// How the timeline names a Discord user: `Nelly (discord:80351110224678912)`,
/// as Slack's are `Sam Smith (slack:U0SAM)`.
pub fn actor(nick: Option<&str>, user: &User) -> String {
    let name = display_name(nick, user);
    if name.is_empty() {
        format!("discord:{}", user.id)
    } else {
        format!("{} (discord:{})", crate::text::clip(&name, 64), user.id)
    }
}

/// A request that is signed but not something to act on: a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

/// Where what Discord sends is acted on. Cheap to clone.
#[derive(Clone)]
pub struct Interactions {
    discord: Discord,
    commands: CommandContext,
}

impl Interactions {
    pub fn new(discord: Discord, commands: CommandContext) -> Interactions {
        Interactions { discord, commands }
    }

    /// The application these interactions are for.
    pub fn discord(&self) -> &Discord {
        &self.discord
    }

    /// [`verify`] with this application's key, its window and the app's
    /// clock.
    pub fn verify(
        &self,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
    ) -> Result<(), Unverified> {
        verify(
            &self.discord.verifier,
            self.discord.max_age,
            self.commands.clock.now().0,
            signature,
            timestamp,
            body,
        )
    }

    /// The answer to a verified interaction (the HTTP response's JSON).
    pub async fn answer(&self, body: &[u8]) -> Result<Value, Unusable> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| Unusable(format!("not an interaction: {e}")))?;
        match value.get("type").and_then(Value::as_u64) {
            // PING: Discord checking the endpoint.
            Some(1) => Ok(json!({"type": 1})),
            Some(2) => {
                let i: CommandInteraction = serde_json::from_value(value)
                    .map_err(|e| Unusable(format!("not an application command: {e}")))?;
                Ok(self.command(i).await)
            }
            Some(3) => {
                let i: ComponentInteraction = serde_json::from_value(value)
                    .map_err(|e| Unusable(format!("not a message component: {e}")))?;
                Ok(self.component(i).await)
            }
            Some(4) => {
                let i: CommandInteraction = serde_json::from_value(value).map_err(|e| {
                    Unusable(format!("not an application command autocomplete: {e}"))
                })?;
                Ok(self.autocomplete(&i).await)
            }
            Some(other) => Err(not_handled(other)),
            None => Err(Unusable("an interaction has a numeric type".into())),
        }
    }

    /// The answer to an interaction that came over the gateway (already
    /// read by serenity), the same as [`Self::answer`]'s over HTTP.
    pub async fn answer_read(&self, interaction: Interaction) -> Result<Value, Unusable> {
        match interaction {
            Interaction::Ping(_) => Ok(json!({"type": 1})),
            Interaction::Command(i) => Ok(self.command(i).await),
            Interaction::Component(i) => Ok(self.component(i).await),
            Interaction::Autocomplete(i) => Ok(self.autocomplete(&i).await),
            Interaction::Modal(_) => Err(not_handled(5)),
            _ => Err(Unusable(
                "this kind of interaction is not handled here".into(),
            )),
        }
    }

    async fn command(&self, i: CommandInteraction) -> Value {
        if i.data.kind != CommandType::ChatInput {
            return message(&refused(
                "only slash commands are understood here; type /help for them",
            ));
        }
        let Some(line) = command_line(&i.data.name, &i.data.options) else {
            return message(&refused(
                "an option could not be read as text; type the command with text options",
            ));
        };
        let (user, nick) = caller(i.member.as_deref(), &i.user);
        self.run(user, nick, line, i.channel_id, i.token).await
    }

    /// APPLICATION_COMMAND_AUTOCOMPLETE_RESULT: suggestions for the option
    /// being typed, read from the store or the catalog. Never deferred
    /// (Discord does not allow it): what is not found within
    /// [`AUTOCOMPLETE_WITHIN`] is answered with no suggestions.
    async fn autocomplete(&self, i: &CommandInteraction) -> Value {
        let choices = match focused(&i.data.name, &i.data.options) {
            Some((path, name, typed)) => {
                let work = async {
                    match super::register::completion(&path, &name) {
                        Some(Completes::Incident) => incident_choices(&self.commands, &typed).await,
                        Some(Completes::Runbook) => runbook_choices(&self.commands, &typed),
                        None => Vec::new(),
                    }
                };
                tokio::time::timeout(AUTOCOMPLETE_WITHIN, work)
                    .await
                    .unwrap_or_else(|_| {
                        warn!(option = %name, "discord: autocomplete took too long; answered with no suggestions");
                        Vec::new()
                    })
            }
            None => Vec::new(),
        };
        json!({"type": 8, "data": {"choices": choices}})
    }

    async fn component(&self, i: ComponentInteraction) -> Value {
        if !matches!(i.data.kind, ComponentInteractionDataKind::Button) {
            return message(&refused("only the bot's buttons are understood here"));
        }
        let Some(line) = button_line(&i.data.custom_id) else {
            return message(&refused("this button is not one of firstline's"));
        };
        let (user, nick) = caller(i.member.as_ref(), &i.user);
        self.run(user, nick, line, i.channel_id, i.token).await
    }

    /// Runs `line` as `user`, typed in `channel`: the reply if done
    /// within the deadline, else a deferred answer now and the reply
    /// edited in when done.
    async fn run(
        &self,
        user: User,
        nick: Option<String>,
        line: String,
        channel: ChannelId,
        token: String,
    ) -> Value {
        let ctx = self.commands.clone();
        let mut work = tokio::spawn({
            let line = line.clone();
            async move {
                let name = actor(nick.as_deref(), &user);
                // From a request signed with the application's key.
                let me = Identity::new("discord", &user.id.to_string());
                let here = incident_of_thread(&ctx.store, channel).await;
                handler::handle_by(&ctx, &name, Some(&me), line.trim(), here).await
            }
        });
        let within = self.discord.answer_within;
        let done = match within.is_zero() {
            true => None,
            false => tokio::time::timeout(within, &mut work).await.ok(),
        };
        if let Some(done) = done {
            return message(&reply_of(done));
        }
        let http = self.discord.http.clone();
        tokio::spawn(async move {
            let reply = reply_of(work.await);
            let edit = EditInteractionResponse::new()
                .content(content(&reply))
                .allowed_mentions(CreateAllowedMentions::new());
            if let Err(e) = http
                .edit_original_interaction_response(&token, &edit, Vec::new())
                .await
            {
                warn!(error = %e, "discord: the late answer could not be delivered");
            }
        });
        // DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: "thinking…", for the caller.
        json!({"type": 5, "data": {"flags": EPHEMERAL}})
    }
}

/// The incident whose thread `channel` is: its thread reference
/// (`CHANNEL/ROOT/THREAD`, see `post`) ends with `/THREAD`. `None` in the
/// channel itself, elsewhere, or when the store cannot say (logged: the
/// command then asks for an id).
async fn incident_of_thread(store: &crate::store::Store, channel: ChannelId) -> Option<i64> {
    store
        .incident_by_thread_suffix(&format!("/{channel}"))
        .await
        .map_err(|e| warn!(error = %e, "discord: could not look up the thread's incident"))
        .ok()
        .flatten()
}

/// The option being typed in an autocomplete interaction: the command's
/// path (`incident ack`), the option's name and what is typed so far.
fn focused(name: &str, options: &[CommandDataOption]) -> Option<(String, String, String)> {
    let mut path = name.to_string();
    let mut options = options;
    loop {
        let mut deeper = None;
        for o in options {
            match &o.value {
                CommandDataOptionValue::SubCommand(inner)
                | CommandDataOptionValue::SubCommandGroup(inner) => {
                    deeper = Some((o.name.as_str(), inner.as_slice()));
                }
                CommandDataOptionValue::Autocomplete { value, .. } => {
                    return Some((path, o.name.clone(), value.clone()));
                }
                _ => {}
            }
        }
        let (sub, inner) = deeper?;
        path = format!("{path} {sub}");
        options = inner;
    }
}

/// Incidents whose id or title contain `typed` (any case): open ones
/// first, newest first, then resolved ones; an id typed in full is found
/// however old. Named `INC-12 · P1 · title (state)`, valued `INC-12`.
async fn incident_choices(ctx: &CommandContext, typed: &str) -> Vec<Value> {
    let typed = typed.trim().to_lowercase();
    let mut found: Vec<Incident> = Vec::new();
    // The id typed in full (`INC-7`, `inc-7`, `7`).
    let number = typed.strip_prefix("inc-").unwrap_or(&typed);
    if let Ok(id) = number.parse::<i64>()
        && let Ok(Some(i)) = ctx.store.incident(id).await
    {
        found.push(i);
    }
    for filter in [IncidentFilter::Open, IncidentFilter::All] {
        match ctx.store.incidents(filter, AUTOCOMPLETE_SCAN).await {
            Ok(list) => found.extend(list),
            Err(e) => warn!(error = %e, "discord: autocomplete could not read incidents"),
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<&Incident> = found
        .iter()
        .filter(|i| seen.insert(i.id))
        .filter(|i| {
            typed.is_empty()
                || i.human_id.to_lowercase().contains(&typed)
                || i.title.to_lowercase().contains(&typed)
        })
        .collect();
    // The one typed in full first, then open before resolved, newest first.
    out.sort_by_key(|i| {
        (
            i.human_id.to_lowercase() != typed && i.id.to_string() != typed,
            i.state == State::Resolved,
            std::cmp::Reverse(i.id),
        )
    });
    out.into_iter()
        .take(CHOICES)
        .map(|i| {
            let name = format!(
                "{} · {} · {} ({})",
                i.human_id, i.severity, i.title, i.state
            );
            json!({"name": clip(&name, CHOICE_CHARS), "value": clip(&i.human_id, CHOICE_CHARS)})
        })
        .collect()
}

/// Runbooks whose id or titles contain `typed` (any case), in the
/// catalog's order, named `id · English title`, valued by id.
fn runbook_choices(ctx: &CommandContext, typed: &str) -> Vec<Value> {
    let typed = typed.trim().to_lowercase();
    ctx.catalog
        .entries
        .iter()
        .map(|e| &e.runbook)
        .filter(|r| r.id.chars().count() <= CHOICE_CHARS)
        .filter(|r| {
            typed.is_empty()
                || r.id.to_lowercase().contains(&typed)
                || r.title_en.to_lowercase().contains(&typed)
                || r.title.to_lowercase().contains(&typed)
        })
        .take(CHOICES)
        .map(|r| {
            let title = if r.title_en.trim().is_empty() {
                &r.title
            } else {
                &r.title_en
            };
            let name = format!("{} · {}", r.id, title.trim());
            json!({"name": clip(&name, CHOICE_CHARS), "value": r.id})
        })
        .collect()
}

/// Who used it: the member's user in a server (with their nickname), the
/// user in a DM.
fn caller(member: Option<&serenity::model::guild::Member>, user: &User) -> (User, Option<String>) {
    match member {
        Some(m) => (m.user.clone(), m.nick.clone()),
        None => (user.clone(), None),
    }
}

fn not_handled(kind: u64) -> Unusable {
    Unusable(format!(
        "interaction type {kind} is not handled here (1 PING, 2 APPLICATION_COMMAND, 3 MESSAGE_COMPONENT, 4 APPLICATION_COMMAND_AUTOCOMPLETE are)"
    ))
}

/// What a signed-but-unusable interaction that came over the gateway is
/// answered with (over HTTP it is a 400): the reason, for the caller only.
pub fn unusable_answer(why: &Unusable) -> Value {
    message(&refused(&format!("firstline could not read this: {why}")))
}

fn refused(text: &str) -> Reply {
    Reply {
        text: text.into(),
        ok: false,
    }
}

fn reply_of(done: Result<Reply, tokio::task::JoinError>) -> Reply {
    done.unwrap_or_else(|e| Reply {
        text: format!("the command failed inside firstline ({e}); nothing may have changed, check the incident"),
        ok: false,
    })
}

/// A reply as the caller reads it: a refusal marked as one, within
/// Discord's length.
fn content(reply: &Reply) -> String {
    let text = if reply.ok {
        reply.text.clone()
    } else {
        format!("⚠️ {}", reply.text)
    };
    crate::text::clip(&super::emoji::shown(&text), CONTENT_CHARS).into_owned()
}

/// CHANNEL_MESSAGE_WITH_SOURCE: the reply, for the caller only, mentioning
/// nobody (a reply may quote a note with `@everyone` in it).
fn message(reply: &Reply) -> Value {
    json!({
        "type": 4,
        "data": {
            "content": content(reply),
            "flags": EPHEMERAL,
            "allowed_mentions": {"parse": []},
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn verifier() -> Verifier {
        Verifier::try_new(key().verifying_key().to_bytes()).expect("valid key")
    }

    fn sign(timestamp: &str, body: &[u8]) -> String {
        let message = [timestamp.as_bytes(), body].concat();
        hex::encode(key().sign(&message).to_bytes())
    }

    const NOW_MS: i64 = 1_800_000_000_500;
    const MAX_AGE: Duration = Duration::from_secs(300);

    fn check(sig: Option<&str>, ts: Option<&str>, body: &[u8]) -> Result<(), Unverified> {
        verify(&verifier(), MAX_AGE, NOW_MS, sig, ts, body)
    }

    #[test]
    fn a_signed_fresh_request_is_verified() {
        let body = br#"{"type":1}"#;
        let ts = "1800000000";
        assert_eq!(check(Some(&sign(ts, body)), Some(ts), body), Ok(()));
        // At the edges of the window.
        for ts in ["1799999700", "1800000060"] {
            assert_eq!(check(Some(&sign(ts, body)), Some(ts), body), Ok(()), "{ts}");
        }
    }

    #[test]
    fn a_changed_body_or_timestamp_or_a_missing_header_is_refused() {
        let body = br#"{"type":1}"#;
        let ts = "1800000000";
        let sig = sign(ts, body);
        assert_eq!(
            check(Some(&sig), Some(ts), br#"{"type":2}"#),
            Err(Unverified::BadSignature)
        );
        assert_eq!(
            check(Some(&sig), Some("1800000001"), body),
            Err(Unverified::BadSignature)
        );
        assert_eq!(check(None, Some(ts), body), Err(Unverified::Missing));
        assert_eq!(check(Some(&sig), None, body), Err(Unverified::Missing));
        assert_eq!(
            check(Some("xyz"), Some(ts), body),
            Err(Unverified::MalformedSignature)
        );
        let not_hex = "g".repeat(128);
        assert_eq!(
            check(Some(&not_hex), Some(ts), body),
            Err(Unverified::MalformedSignature)
        );
    }

    #[test]
    fn a_stale_or_future_timestamp_is_refused_even_when_signed() {
        let body = br#"{"type":1}"#;
        let stale = "1799999699";
        assert_eq!(
            check(Some(&sign(stale, body)), Some(stale), body),
            Err(Unverified::Stale {
                age_s: 301,
                max_s: 300
            })
        );
        let ahead = "1800000061";
        assert_eq!(
            check(Some(&sign(ahead, body)), Some(ahead), body),
            Err(Unverified::Ahead { ahead_s: 61 })
        );
        let words = "yesterday";
        assert_eq!(
            check(Some(&sign(words, body)), Some(words), body),
            Err(Unverified::MalformedTimestamp)
        );
    }

    fn options(v: Value) -> Vec<CommandDataOption> {
        #[derive(serde::Deserialize)]
        struct Data {
            options: Vec<CommandDataOption>,
        }
        let d: Data = serde_json::from_value(json!({ "options": v })).expect("options");
        d.options
    }

    #[test]
    fn a_subcommand_and_its_options_become_the_typed_line() {
        let ack = options(json!([{"name": "ack", "type": 1, "options": [
            {"name": "id", "type": 3, "value": "INC-7"}
        ]}]));
        assert_eq!(
            command_line("incident", &ack).as_deref(),
            Some("/incident ack INC-7")
        );

        let declare = options(json!([{"name": "declare", "type": 1, "options": [
            {"name": "title", "type": 3, "value": "checkout is down"},
            {"name": "sev", "type": 3, "value": "P1"}
        ]}]));
        assert_eq!(
            command_line("incident", &declare).as_deref(),
            Some("/incident declare checkout is down --sev P1")
        );

        let note = options(json!([{"name": "note", "type": 1, "options": [
            {"name": "id", "type": 3, "value": "INC-2"},
            {"name": "text", "type": 3, "value": "said \"restart\" twice"}
        ]}]));
        assert_eq!(
            command_line("incident", &note).as_deref(),
            Some("/incident note INC-2 said \\\"restart\\\" twice")
        );

        // Discord lists required options first; the line keeps the usage's order.
        let sev = options(json!([{"name": "sev", "type": 1, "options": [
            {"name": "severity", "type": 3, "value": "P1"},
            {"name": "id", "type": 3, "value": "INC-3"}
        ]}]));
        assert_eq!(
            command_line("incident", &sev).as_deref(),
            Some("/incident sev INC-3 P1")
        );

        let page = options(json!([
            {"name": "who", "type": 6, "value": "80351110224678912"},
            {"name": "message", "type": 3, "value": "db is full"}
        ]));
        assert_eq!(
            command_line("page", &page).as_deref(),
            Some("/page <@80351110224678912> db is full")
        );

        assert_eq!(command_line("oncall", &[]).as_deref(), Some("/oncall"));
        let list = options(json!([{"name": "list", "type": 1, "options": []}]));
        assert_eq!(
            command_line("runbook", &list).as_deref(),
            Some("/runbook list")
        );
    }

    #[test]
    fn a_button_press_becomes_the_command_it_stands_for() {
        use crate::chat::buttons::{ACK, RERUN, RESOLVE};
        assert_eq!(
            button_line(&custom_id(ACK, "INC-7")).as_deref(),
            Some("/incident ack INC-7")
        );
        assert_eq!(
            button_line(&custom_id(RESOLVE, "INC-7")).as_deref(),
            Some("/incident resolve INC-7")
        );
        assert_eq!(
            button_line(&custom_id(RERUN, "RB-1 INC-7")).as_deref(),
            Some("/runbook run RB-1 INC-7")
        );
        assert_eq!(button_line("somebody_else:1"), None);
        assert_eq!(button_line("incident_ack"), None);
    }

    #[test]
    fn an_answer_is_ephemeral_mentions_nobody_and_marks_a_refusal() {
        let ok = message(&Reply {
            text: "INC-1 acknowledged".into(),
            ok: true,
        });
        assert_eq!(
            ok,
            json!({"type": 4, "data": {"content": "INC-1 acknowledged", "flags": 64, "allowed_mentions": {"parse": []}}})
        );
        let no = message(&refused("no INC-9"));
        assert_eq!(no["data"]["content"], "⚠️ no INC-9");
        let long = message(&Reply {
            text: "x".repeat(5000),
            ok: true,
        });
        assert!(
            long["data"]["content"]
                .as_str()
                .is_some_and(|c| c.chars().count() <= CONTENT_CHARS)
        );
    }

    #[test]
    fn the_name_shown_is_the_nickname_then_the_display_name_then_the_username() {
        let user: User = serde_json::from_value(json!({
            "id": "80351110224678912", "username": "nelly", "global_name": "Nelly",
            "discriminator": "0", "avatar": null
        }))
        .expect("user");
        assert_eq!(display_name(Some("Nel (on call)"), &user), "Nel (on call)");
        assert_eq!(display_name(None, &user), "Nelly");
        let plain: User = serde_json::from_value(json!({
            "id": "1", "username": "nelly", "discriminator": "0", "avatar": null
        }))
        .expect("user");
        assert_eq!(display_name(None, &plain), "nelly");
        assert_eq!(actor(Some("Nel"), &user), "Nel (discord:80351110224678912)");
    }
}
