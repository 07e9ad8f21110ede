//! Typed settings: defaults, then an optional TOML file, then the environment.
//!
//! The environment rule: every key `section.key` can be set with
//! `FIRSTLINE_SECTION__KEY` (upper or lower case; `__` separates levels, so
//! `incidents.severity_map.critical` is `FIRSTLINE_INCIDENTS__SEVERITY_MAP__CRITICAL`).
//! Only variables with a `__` take part, so `FIRSTLINE_CONFIG` and the
//! variables your secrets live in never collide with settings.
//!
//! Secrets are never written into the file: a secret setting is a reference,
//! `{ env = "VAR" }` or `{ file = "/run/secrets/x" }`, resolved at start-up
//! into a [`SecretString`] that prints as `[REDACTED]`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::Severity;
use crate::escalation::Escalation;
use crate::probe::{Target, TargetSettings};

pub mod actions;
pub mod escalation;

pub use escalation::{
    ContactSettings, OverrideSettings, PagerSettings, Pagers, PolicySettings, RotationSettings,
    StepSettings,
};

/// Everything firstline can be told. Each section is documented in README.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub log: LogSettings,
    pub intake: IntakeSettings,
    pub incidents: IncidentSettings,
    pub chat: ChatSettings,
    pub outbox: OutboxSettings,
    pub runbooks: RunbookSettings,
    /// Systems the runbooks' probes talk to, by name (`[targets.NAME]`).
    pub targets: BTreeMap<String, TargetSettings>,
    /// People who can be paged, by key (`[contacts.tech_lead]`).
    pub contacts: BTreeMap<String, ContactSettings>,
    /// People who take turns on call, by name (`[rotations.primary]`).
    pub rotations: BTreeMap<String, RotationSettings>,
    /// One policy per severity (`[escalation.P1]`); a severity without one
    /// pages nobody.
    pub escalation: BTreeMap<String, PolicySettings>,
    /// How pages leave other than through chat (`[pagers.email]`, …):
    /// built into `pager::Pagers`.
    pub pagers: PagerSettings,
    /// Who holds which approver role (`[roles.fixers] members = [...]`).
    pub roles: BTreeMap<String, actions::RoleSettings>,
    /// How proposals are approved (`[approvals]`).
    pub approvals: actions::ApprovalSettings,
    /// How actions run, and the commands they may run (`[actions]`).
    pub actions: actions::ActionSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunbookSettings {
    /// Load the runbooks bundled in the binary (templates/runbooks).
    pub bundled: bool,
    /// More runbook files or directories (`*.toml`, recursively).
    pub dirs: Vec<PathBuf>,
    /// Run the matching runbook's checks when an alert opens an incident.
    pub run_on_alert: bool,
    /// Checks of one runbook probed at the same time.
    pub concurrency: usize,
    /// Runbook runs of different incidents under way at the same time (one
    /// incident's runs still go one at a time, in order).
    pub max_parallel_runs: usize,
}

impl Default for RunbookSettings {
    fn default() -> Self {
        RunbookSettings {
            bundled: true,
            dirs: Vec::new(),
            run_on_alert: true,
            concurrency: 4,
            max_parallel_runs: 4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address the HTTP server binds to; loopback by default so that a first
    /// run exposes nothing.
    pub listen: String,
    /// Largest request body accepted, in bytes; bigger ones get 413.
    pub max_body_bytes: usize,
    /// Connections served at once; one more is answered 503 and closed,
    /// so that idle or slow clients cannot take the server from senders.
    pub max_connections: usize,
    /// A request's headers must arrive within this (and an idle
    /// keep-alive connection is closed after it): slowloris protection.
    pub header_timeout_ms: u64,
    /// A request's body must arrive within this once its headers have.
    pub body_timeout_ms: u64,
    /// IANA time zone in which times are shown to people (stored times are UTC).
    pub timezone: String,
    /// Bearer tokens `/api/*` takes, as secret references; any one of them
    /// will do. Empty: `/api/*` is open (to whoever can reach the port).
    pub api_tokens: Vec<SecretRef>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            max_connections: 1024,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            timezone: "UTC".into(),
            api_tokens: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite://PATH` (created if missing) or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
    /// Most deliveries per intake journal append (group commit), and most
    /// alerts per run the incident writer applies in one transaction. In a
    /// storm the writer, running below intake's priority, fills its runs:
    /// 2048 made ~5 % more single-alert intake under wrk than 512, as each
    /// commit rewrites the same index pages for more alerts.
    pub batch_max: usize,
    /// Least time between the starts of two runs the incident writer
    /// applies from the intake journal. A run starts at once after a
    /// quiet spell; under a steady flow the alerts of this window share
    /// one commit instead of one commit each, which cuts the database's
    /// writes (each commit rewrites the same index pages) and so the
    /// disk flushes that delay intake's own. 0 applies every run at once.
    pub apply_interval_ms: u64,
    /// SQLite `synchronous` pragma: `full` survives power loss, `normal`
    /// survives a process crash only.
    pub sqlite_synchronous: String,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: "sqlite://firstline.db".into(),
            max_connections: 8,
            batch_max: 2048,
            apply_interval_ms: 10,
            sqlite_synchronous: "full".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` for people, `json` for log pipelines.
    pub format: String,
    /// A tracing filter, e.g. `info` or `firstline=debug,sqlx=warn`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeSettings {
    /// Receipts (the record of each delivery, for dedup and audit) are kept
    /// this many days (seed 000: 90).
    pub receipt_ttl_days: u32,
    /// At most this many receipts are kept, oldest pruned first (seed 000:
    /// 1000; size it as daily alerts × TTL days × 1.2–1.5).
    pub max_receipts: u32,
    /// Deliveries waiting for the journal writer before intake sheds load
    /// with 503.
    pub queue_capacity: usize,
    /// Alerts accepted (journaled) but not yet applied to incidents before
    /// intake sheds load with 503; bounds the journal on disk and its dedup
    /// index in memory (~1 KB an alert).
    pub max_backlog: u32,
    /// Optional bearer token per source (`alertmanager`, `grafana`,
    /// `generic`), as a secret reference.
    pub tokens: BTreeMap<String, SecretRef>,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        IntakeSettings {
            receipt_ttl_days: 90,
            max_receipts: 1000,
            queue_capacity: 10_000,
            max_backlog: 100_000,
            tokens: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentSettings {
    /// Labels whose values put alerts into one incident; `a|b` takes the
    /// first of the alternatives an alert has.
    pub group_by: Vec<String>,
    /// `severity` label value -> P1/P2/P3.
    pub severity_map: BTreeMap<String, String>,
    /// Severity of alerts with no or an unmapped `severity` label.
    pub default_severity: String,
    /// When every alert of an incident has resolved: `mitigated` (a person
    /// confirms the resolution) or `resolved`.
    pub on_all_alerts_resolved: String,
}

impl Default for IncidentSettings {
    fn default() -> Self {
        IncidentSettings {
            group_by: vec!["alertname".into(), "service|job".into()],
            severity_map: [("critical", "P1"), ("warning", "P2"), ("info", "P3")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            default_severity: "P3".into(),
            on_all_alerts_resolved: "mitigated".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatSettings {
    /// `console` (stdout and the local endpoints; no account needed),
    /// `slack` or `discord`.
    pub platform: String,
    /// Channel incident threads are opened in (on Slack, its id: `C0…`;
    /// on Discord its id, a number, which may be written unquoted).
    #[serde(deserialize_with = "string_or_number")]
    pub channel: String,
    /// Read chat commands from standard input when it is a terminal.
    pub console_stdin: bool,
    /// Storm mode: when more incidents than this open within a minute, new
    /// incidents' root posts are held behind one summary message (`0`
    /// turns it off).
    pub storm_threshold: u32,
    /// The window, in seconds, new incidents are counted over for storm
    /// mode; a storm ends once a whole window passes at or below the
    /// threshold.
    pub storm_window_s: u32,
    /// The Slack app, for `platform = "slack"`.
    pub slack: Option<SlackSettings>,
    /// The Discord application, for `platform = "discord"`.
    pub discord: Option<DiscordSettings>,
    /// The console's HTTP endpoints (`/console/*`).
    pub console: ConsoleSettings,
}

/// `[chat.console]`: the console's HTTP endpoints (`/console/commands`,
/// `/console/reactions`, `/console/posts`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Mount `/console/*` on another platform too (they always are on
    /// `platform = "console"`).
    pub enabled: bool,
    /// When set, `/console/*` takes only `Authorization: Bearer <token>`,
    /// and a console reaction carries its user's identity (vouched).
    pub token: Option<SecretRef>,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            platform: "console".into(),
            channel: "#incidents".into(),
            console_stdin: true,
            storm_threshold: 10,
            storm_window_s: 60,
            slack: None,
            discord: None,
            console: ConsoleSettings::default(),
        }
    }
}

/// `[chat.slack]`: how firstline reaches Slack and how Slack reaches it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// `http` (Slack calls `/slack/events`, `/slack/commands`,
    /// `/slack/interactions`) or `socket` (Socket Mode: firstline opens a
    /// WebSocket to Slack with the app-level token; no public URL needed).
    #[serde(default = "default_slack_mode")]
    pub mode: String,
    /// The bot token (`xoxb-…`).
    pub bot_token: Option<SecretRef>,
    /// Verifies that requests come from Slack (HTTP mode; not used in
    /// Socket Mode).
    pub signing_secret: Option<SecretRef>,
    /// The app-level token (`xapp-…`, scope `connections:write`), Socket
    /// Mode only.
    pub app_token: Option<SecretRef>,
    /// The Web API base, for proxies and tests.
    #[serde(default = "default_slack_api_url")]
    pub api_url: String,
    /// Severities whose incidents get a channel of their own
    /// (`#inc-<n>-<slug>`), e.g. `["P1"]`; `[]` for none.
    #[serde(default)]
    pub incident_channels: Vec<String>,
    /// Slack user ids (`U…`) invited to every incident channel (whoever
    /// acknowledges an incident is invited to its channel too).
    #[serde(default)]
    pub responders: Vec<String>,
    /// How long a slash command may run before its answer is "working on
    /// it" and the result follows through Slack's `response_url` (Slack
    /// waits 3 s at most); 0 answers "working on it" to every command.
    #[serde(default = "default_answer_within_ms")]
    pub answer_within_ms: u64,
}

fn default_answer_within_ms() -> u64 {
    2_000
}

fn default_slack_mode() -> String {
    "http".into()
}

fn default_slack_api_url() -> String {
    "https://slack.com/api".into()
}

/// `[chat.slack]` with its secrets resolved.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub bot_token: SecretString,
    /// How Slack reaches firstline, with the secret that mode needs.
    pub mode: SlackMode,
    /// Without a trailing slash: the client adds `/method`.
    pub api_url: String,
    /// See [`SlackSettings::answer_within_ms`].
    pub answer_within: std::time::Duration,
    /// Severities (`P1`…) whose incidents get a channel of their own.
    pub incident_channels: Vec<String>,
    /// Invited to every incident channel.
    pub responders: Vec<String>,
}

/// `[chat.discord]`: how firstline reaches Discord and how Discord reaches
/// it (the interactions endpoint, `POST /discord/interactions`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordSettings {
    /// The bot's token (Bot → Token), for the REST API.
    pub bot_token: Option<SecretRef>,
    /// The application's id (General Information → Application ID): the
    /// interaction webhooks' path names it.
    #[serde(default, deserialize_with = "string_or_number")]
    pub application_id: String,
    /// The application's public key, 64 hex digits (General Information →
    /// Public Key): Discord signs every interaction with its private half.
    #[serde(default)]
    pub public_key: String,
    /// The server (guild) the bot serves.
    #[serde(default, deserialize_with = "string_or_number")]
    pub guild_id: String,
    /// The REST API base, for proxies and tests.
    #[serde(default = "default_discord_api_url")]
    pub api_url: String,
    /// An interaction whose `X-Signature-Timestamp` is older than this many
    /// seconds is refused as a replay (serenity's verifier checks the
    /// signature only, not the timestamp's age).
    #[serde(default = "default_discord_max_age_s")]
    pub max_age_s: u64,
    /// How long a command may run before its answer is deferred ("thinking…")
    /// and the reply edited in when done (Discord waits 3 s at most); 0
    /// defers every command.
    #[serde(default = "default_discord_answer_within_ms")]
    pub answer_within_ms: u64,
}

/// A string, or a number taken as its digits: Discord's ids are numbers
/// people copy, and the environment rule reads digits as a number
/// (`FIRSTLINE_CHAT__DISCORD__GUILD_ID=1234…`).
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or an id")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(Visitor)
}

/// Discord's REST API base (serenity adds `/v10/…`).
pub const DISCORD_API_URL: &str = "https://discord.com/api";

fn default_discord_api_url() -> String {
    DISCORD_API_URL.into()
}

fn default_discord_max_age_s() -> u64 {
    300
}

fn default_discord_answer_within_ms() -> u64 {
    2_500
}

/// `[chat.discord]` checked, with its secret read.
#[derive(Clone)]
pub struct DiscordConfig {
    pub bot_token: SecretString,
    /// A snowflake: the application's id.
    pub application_id: u64,
    /// The checked public key (32 bytes).
    pub public_key: [u8; 32],
    /// A snowflake: the server the bot serves.
    pub guild_id: u64,
    /// Without a trailing slash.
    pub api_url: String,
    /// See [`DiscordSettings::max_age_s`].
    pub max_age: std::time::Duration,
    /// See [`DiscordSettings::answer_within_ms`].
    pub answer_within: std::time::Duration,
}

impl std::fmt::Debug for DiscordConfig {
    // The public key is public, but long; the token is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordConfig")
            .field("bot_token", &"[REDACTED]")
            .field("application_id", &self.application_id)
            .field("guild_id", &self.guild_id)
            .field("api_url", &self.api_url)
            .field("max_age", &self.max_age)
            .field("answer_within", &self.answer_within)
            .finish_non_exhaustive()
    }
}

/// `[chat.console]` read: whether `/console/*` is there and the token it
/// takes.
#[derive(Debug, Clone, Default)]
pub struct ConsoleAccess {
    /// `chat.platform = "console"` or `chat.console.enabled = true`;
    /// otherwise `/console/*` is not mounted (404).
    pub mounted: bool,
    /// `chat.console.token`: callers of `/console/*` must present it, and
    /// then a console reaction carries its user's identity.
    pub token: Option<SecretString>,
}

/// `chat.slack.mode`, with what each mode needs.
#[derive(Debug, Clone)]
pub enum SlackMode {
    /// Slack POSTs to `/slack/*`, signed with this secret.
    Http { signing_secret: SecretString },
    /// firstline connects to Slack (Socket Mode) with this app-level token.
    Socket { app_token: SecretString },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxSettings {
    /// Delivery attempts before an intent is parked as dead (and counted in
    /// `/metrics`).
    pub max_attempts: u32,
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// How often the dispatcher looks for due intents when nothing woke it.
    pub poll_interval_ms: u64,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            max_attempts: 12,
            base_backoff_ms: 500,
            max_backoff_ms: 60_000,
            poll_interval_ms: 1_000,
        }
    }
}

/// Where a secret lives. Never the secret itself.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SecretRef {
    /// Name of the environment variable holding the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Path of a file holding the secret (trailing newline trimmed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// The table form `{ env = "VAR" }` / `{ file = "/path" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRefTable {
    env: Option<String>,
    file: Option<PathBuf>,
}

const INLINE_SECRET: &str =
    "a secret is not written into the configuration: use { env = \"VAR\" } or { file = \"/path\" }";

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SecretRef;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("{ env = \"VAR\" } or { file = \"/path\" }")
            }
            // Any scalar is refused without repeating it: it may be the secret.
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<SecretRef, A::Error> {
                let t =
                    SecretRefTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(SecretRef {
                    env: t.env,
                    file: t.file,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl SecretRef {
    /// Reads the secret; the error says where it looked, never what it found.
    pub fn resolve(&self) -> Result<SecretString, String> {
        match (&self.env, &self.file) {
            (Some(var), None) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
                Ok(_) => Err(format!("environment variable {var} is empty")),
                Err(_) => Err(format!("environment variable {var} is not set")),
            },
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(v) if !v.trim_end().is_empty() => Ok(SecretString::from(
                    v.trim_end_matches(['\r', '\n']).to_string(),
                )),
                Ok(_) => Err(format!("secret file {} is empty", path.display())),
                Err(e) => Err(format!("cannot read secret file {}: {e}", path.display())),
            },
            _ => Err("a secret is either { env = \"VAR\" } or { file = \"/path\" }".into()),
        }
    }
}

/// One thing wrong with the configuration, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key, e.g. `store.url`; `(file)` for the file as a whole.
    pub key: String,
    /// Line in the file, when the problem is on one.
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line}): {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Every problem found, so that one `check-config` run lists them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Settings after validation, with the derived values code needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    pub listen: SocketAddr,
    pub timezone: chrono_tz::Tz,
    pub severity_map: BTreeMap<String, Severity>,
    pub default_severity: Severity,
    /// Resolved bearer tokens by source name.
    pub tokens: BTreeMap<String, SecretString>,
    /// Where the settings came from, for `check-config` and the start-up log.
    pub file: Option<PathBuf>,
    /// Probe targets with their secrets resolved.
    pub targets: BTreeMap<String, Target>,
    /// The Slack app, when `chat.platform` is `slack`.
    pub slack: Option<SlackConfig>,
    /// The Discord application, when `chat.platform` is `discord`.
    pub discord: Option<DiscordConfig>,
    /// `server.api_tokens`, read: `/api/*` takes any one of them (open when
    /// empty).
    pub api_tokens: Vec<SecretString>,
    /// `/console/*` and how callers are let in.
    pub console: ConsoleAccess,
    /// Contacts, rotations and policies, validated (empty when none are
    /// configured).
    pub escalation: std::sync::Arc<Escalation>,
    /// `[pagers.*]` with their secrets read.
    pub pagers: Pagers,
    /// `[roles.*]` and `[approvals]`, checked.
    pub approval: std::sync::Arc<crate::approval::Rules>,
    /// What actions may reach: targets and `[actions.commands.*]`.
    pub action_env: std::sync::Arc<crate::action::Env>,
}

impl Config {
    /// What start-up warns about: routes anyone who can reach a port that
    /// is not loopback may use without a token.
    pub fn exposure_warnings(&self) -> Vec<String> {
        if self.listen.ip().is_loopback() {
            return Vec::new();
        }
        let mut warnings = Vec::new();
        if self.api_tokens.is_empty() {
            warnings.push(format!(
                "/api/* is readable by anyone who can reach {}: incidents, timelines, posts and postmortems; set server.api_tokens = [{{ env = \"VAR\" }}] (or {{ file = \"/path\" }}) to require Authorization: Bearer",
                self.listen
            ));
        }
        if self.console.mounted && self.console.token.is_none() {
            warnings.push(format!(
                "/console/* takes commands from anyone who can reach {}; set chat.console.token = {{ env = \"VAR\" }} to require Authorization: Bearer",
                self.listen
            ));
        }
        warnings
    }
}

/// The most runbook runs `runbooks.max_parallel_runs` allows at once: each
/// may hold `runbooks.concurrency` probe connections.
pub const MAX_PARALLEL_RUNS: usize = 64;

const KNOWN_SOURCES: [&str; 3] = ["alertmanager", "grafana", "generic"];

/// Loads defaults, the file (if any) and the environment, and validates.
pub fn load(file: Option<&Path>) -> Result<Config, ConfigErrors> {
    load_with_env(file, std::env::vars())
}

/// [`load`] with the environment passed in, so tests need not mutate the
/// process environment.
pub fn load_with_env(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let text = match file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) => {
                return Err(ConfigErrors(vec![ConfigError {
                    key: "(file)".into(),
                    line: None,
                    message: format!("cannot read {}: {e}", path.display()),
                }]));
            }
        },
        None => None,
    };

    // First the file on its own, for errors with line numbers: every
    // structural problem (a typo, a wrong type, an inline secret), not
    // only the first, then whatever validation finds in the rest.
    if let Some(text) = &text {
        let (structural, rest) = structural_errors(text);
        if !structural.is_empty() {
            let mut errors = structural;
            if let Some(rest) = rest
                && let Err(more) = load_text(file, Some(rest), Vec::new())
            {
                // A key already named is not named again: a bad value's
                // line is blanked for this second look, and its absence
                // (a required key) is the same mistake.
                for e in more.0 {
                    if !errors.iter().any(|x| x.key == e.key) {
                        errors.push(e);
                    }
                }
            }
            errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
            return Err(ConfigErrors(errors));
        }
    }
    load_text(file, text, env)
}

/// Every structural error of the file (see [`crate::toml_errors`]), each
/// named by its dotted key; with the text left once it reads, if it does.
fn structural_errors(text: &str) -> (Vec<ConfigError>, Option<String>) {
    let (found, rest) = crate::toml_errors::structural::<Settings>(text);
    let errors = found
        .into_iter()
        .map(|f| ConfigError {
            key: f
                .line
                .and_then(|l| key_at_line(text, l))
                .or_else(|| {
                    f.line
                        .and_then(|l| crate::toml_errors::header_at_line(text, l))
                })
                .or(f.unknown_field)
                .unwrap_or_else(|| "(file)".into()),
            line: f.line,
            message: f.message,
        })
        .collect();
    (errors, rest)
}

/// The settings from `text` (already known to be well formed) and the
/// environment, validated.
fn load_text(
    file: Option<&Path>,
    text: Option<String>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let overrides: Vec<(String, String)> = env
        .into_iter()
        .filter_map(|(k, v)| {
            let rest = k
                .strip_prefix("FIRSTLINE_")
                .or_else(|| k.strip_prefix("firstline_"))?;
            rest.contains("__").then(|| (rest.to_string(), v))
        })
        .collect();
    let mut figment = Figment::from(Serialized::defaults(Settings::default()));
    if let Some(text) = &text {
        figment = figment.merge(Toml::string(text));
    }
    // The environment is passed in (not read by figment's `Env`) so tests
    // need not touch the process environment; values parse as figment's
    // `Env` would (numbers, booleans, arrays, else strings).
    for (key, value) in &overrides {
        let path = key.to_ascii_lowercase().replace("__", ".");
        let value: figment::value::Value = value.parse().unwrap_or_else(|_| value.as_str().into());
        figment = figment.merge(Serialized::global(&path, value));
    }
    let settings: Settings = match figment.extract() {
        Ok(s) => s,
        Err(errors) => {
            return Err(ConfigErrors(
                errors
                    .into_iter()
                    .map(|e| ConfigError {
                        key: if e.path.is_empty() {
                            "(config)".into()
                        } else {
                            e.path.join(".")
                        },
                        line: None,
                        message: format!("{}{}", e.kind, from_env_hint(&e.path, &overrides)),
                    })
                    .collect(),
            ));
        }
    };
    validate(settings, file.map(Path::to_path_buf), text.as_deref())
}

fn from_env_hint(path: &[String], overrides: &[(String, String)]) -> String {
    let var = format!("FIRSTLINE_{}", path.join("__").to_ascii_uppercase());
    if overrides
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case(&var["FIRSTLINE_".len()..]))
    {
        format!(" (set by {var})")
    } else {
        String::new()
    }
}

/// The dotted key set on `line` (1-based), e.g. `intake.tokens.alertmanager`.
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let mut section = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = crate::toml_errors::without_comment(l).trim();
        if let Some(h) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = h.trim().to_string();
        }
        if i + 1 == line {
            let leaf = t
                .split('=')
                .next()
                .map(str::trim)
                .filter(|k| !k.is_empty() && t.contains('='))?;
            return Some(if section.is_empty() {
                leaf.to_string()
            } else {
                format!("{section}.{leaf}")
            });
        }
    }
    None
}

/// Line of `[section]`'s `key = ` in the file, for validation errors.
fn find_line(text: Option<&str>, key: &str) -> Option<usize> {
    let text = text?;
    let (section, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = crate::toml_errors::without_comment(line).trim();
        if let Some(h) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            current = h.trim().to_string();
        } else if current == section
            && t.split('=').next().map(str::trim) == Some(leaf)
            && t.contains('=')
        {
            return Some(i + 1);
        }
    }
    None
}

fn validate(
    settings: Settings,
    file: Option<PathBuf>,
    text: Option<&str>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut err = |key: &str, message: String| {
        errors.push(ConfigError {
            key: key.to_string(),
            line: find_line(text, key)
                .or_else(|| text.and_then(|t| crate::toml_errors::line_of_key(t, key))),
            message,
        })
    };

    let listen = settings.server.listen.parse::<SocketAddr>().map_err(|_| {
        format!(
            "\"{}\" is not an address like 127.0.0.1:8080",
            settings.server.listen
        )
    });
    if let Err(m) = &listen {
        err("server.listen", m.clone());
    }
    if settings.server.max_body_bytes < 1024 {
        err("server.max_body_bytes", "must be at least 1024".into());
    }
    if settings.server.max_connections < 2 {
        err("server.max_connections", "must be at least 2".into());
    }
    if !(100..=600_000).contains(&settings.server.header_timeout_ms) {
        err(
            "server.header_timeout_ms",
            "must be 100 to 600000 (10 minutes)".into(),
        );
    }
    if !(100..=600_000).contains(&settings.server.body_timeout_ms) {
        err(
            "server.body_timeout_ms",
            "must be 100 to 600000 (10 minutes)".into(),
        );
    }
    let mut api_tokens = Vec::new();
    for (i, secret) in settings.server.api_tokens.iter().enumerate() {
        match secret.resolve() {
            Ok(v) => api_tokens.push(v),
            Err(m) => err(&format!("server.api_tokens[{i}]"), m),
        }
    }
    let timezone = settings
        .server
        .timezone
        .parse::<chrono_tz::Tz>()
        .map_err(|_| {
            format!(
                "\"{}\" is not an IANA time zone such as Asia/Tokyo",
                settings.server.timezone
            )
        });
    if let Err(m) = &timezone {
        err("server.timezone", m.clone());
    }
    let url = &settings.store.url;
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        err(
            "store.url",
            "must start with sqlite: (e.g. sqlite://firstline.db) or postgres://".into(),
        );
    }
    // The writer holds one connection for good; readers (API, dispatchers,
    // checkpoints) need at least one more.
    if settings.store.max_connections < 2 {
        err(
            "store.max_connections",
            "must be at least 2 (the writer keeps one; the API and delivery need another)".into(),
        );
    }
    if settings.store.batch_max == 0 {
        err("store.batch_max", "must be at least 1".into());
    }
    if settings.store.apply_interval_ms > 1000 {
        err(
            "store.apply_interval_ms",
            "must be at most 1000 (incidents would lag alerts by that much)".into(),
        );
    }
    if !matches!(
        settings.store.sqlite_synchronous.as_str(),
        "full" | "normal"
    ) {
        err("store.sqlite_synchronous", "must be full or normal".into());
    }
    if !matches!(settings.log.format.as_str(), "text" | "json") {
        err(
            "log.format",
            format!("\"{}\" is not text or json", settings.log.format),
        );
    }
    if tracing_subscriber::EnvFilter::try_new(&settings.log.level).is_err() {
        err(
            "log.level",
            format!(
                "\"{}\" is not a log filter such as info",
                settings.log.level
            ),
        );
    }
    if settings.intake.receipt_ttl_days == 0 {
        err("intake.receipt_ttl_days", "must be at least 1 day".into());
    }
    if settings.intake.max_receipts == 0 {
        err("intake.max_receipts", "must be at least 1".into());
    }
    if settings.intake.queue_capacity == 0 {
        err("intake.queue_capacity", "must be at least 1".into());
    }
    if settings.intake.max_backlog == 0 {
        err("intake.max_backlog", "must be at least 1".into());
    }
    let mut tokens = BTreeMap::new();
    for (source, secret) in &settings.intake.tokens {
        let key = format!("intake.tokens.{source}");
        if !KNOWN_SOURCES.contains(&source.as_str()) {
            err(
                &key,
                format!(
                    "unknown source; expected one of {}",
                    KNOWN_SOURCES.join(", ")
                ),
            );
            continue;
        }
        match secret.resolve() {
            Ok(s) => {
                tokens.insert(source.clone(), s);
            }
            Err(m) => err(&key, m),
        }
    }
    if settings.incidents.group_by.is_empty() {
        err("incidents.group_by", "needs at least one label".into());
    }
    let mut severity_map = BTreeMap::new();
    for (value, sev) in &settings.incidents.severity_map {
        match sev.parse::<Severity>() {
            Ok(s) => {
                severity_map.insert(value.to_ascii_lowercase(), s);
            }
            Err(_) => err(
                &format!("incidents.severity_map.{value}"),
                format!("\"{sev}\" is not P1, P2 or P3"),
            ),
        }
    }
    let default_severity = settings
        .incidents
        .default_severity
        .parse::<Severity>()
        .map_err(|_| {
            format!(
                "\"{}\" is not P1, P2 or P3",
                settings.incidents.default_severity
            )
        });
    if let Err(m) = &default_severity {
        err("incidents.default_severity", m.clone());
    }
    if !matches!(
        settings.incidents.on_all_alerts_resolved.as_str(),
        "mitigated" | "resolved"
    ) {
        err(
            "incidents.on_all_alerts_resolved",
            "must be mitigated or resolved".into(),
        );
    }
    let (slack, discord) = match settings.chat.platform.as_str() {
        "console" => (None, None),
        "slack" => (slack_config(&settings.chat, &mut err), None),
        "discord" => (None, discord_config(&settings.chat, &mut err)),
        other => {
            err(
                "chat.platform",
                format!("\"{other}\" is not available; this build has: console, slack, discord"),
            );
            (None, None)
        }
    };
    let console = ConsoleAccess {
        mounted: settings.chat.platform == "console" || settings.chat.console.enabled,
        token: match &settings.chat.console.token {
            None => None,
            Some(secret) => match secret.resolve() {
                Ok(v) => Some(v),
                Err(m) => {
                    err("chat.console.token", m);
                    None
                }
            },
        },
    };
    if settings.outbox.max_attempts == 0 {
        err("outbox.max_attempts", "must be at least 1".into());
    }
    if settings.outbox.base_backoff_ms == 0
        || settings.outbox.max_backoff_ms < settings.outbox.base_backoff_ms
    {
        err(
            "outbox.max_backoff_ms",
            "must be at least outbox.base_backoff_ms, which must be above 0".into(),
        );
    }

    if settings.runbooks.concurrency == 0 {
        err("runbooks.concurrency", "must be at least 1".into());
    }
    if !(1..=MAX_PARALLEL_RUNS).contains(&settings.runbooks.max_parallel_runs) {
        err(
            "runbooks.max_parallel_runs",
            format!(
                "must be 1 to {MAX_PARALLEL_RUNS} (runbook runs of different incidents at once; each holds up to runbooks.concurrency probes)"
            ),
        );
    }
    if !(1..=3_600).contains(&settings.chat.storm_window_s) {
        err(
            "chat.storm_window_s",
            "must be 1 to 3600 seconds (storm mode counts new incidents over this window; 60 is a minute)".into(),
        );
    }
    let mut targets = BTreeMap::new();
    for (name, t) in &settings.targets {
        let key = format!("targets.{name}");
        let mut target = Target {
            name: name.clone(),
            settings: t.clone(),
            secret_headers: BTreeMap::new(),
            password: None,
            http_client: Default::default(),
            sql_connections: Default::default(),
        };
        match t {
            TargetSettings::Http {
                base_url,
                secret_headers,
                ..
            } => {
                if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                    err(
                        &format!("{key}.base_url"),
                        format!("\"{base_url}\" must start with http:// or https://"),
                    );
                }
                for (header, secret) in secret_headers {
                    match secret.resolve() {
                        Ok(v) => {
                            target.secret_headers.insert(header.clone(), v);
                        }
                        Err(m) => err(&format!("{key}.secret_headers.{header}"), m),
                    }
                }
            }
            TargetSettings::Postgres { url, password, .. } => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    err(&format!("{key}.url"), "must start with postgres://".into());
                } else if url
                    .split("://")
                    .nth(1)
                    .and_then(|r| r.split('@').next().filter(|_| r.contains('@')))
                    .is_some_and(|u| u.contains(':'))
                {
                    err(
                        &format!("{key}.url"),
                        "has a password in it; use password = { env = \"VAR\" } instead".into(),
                    );
                }
                if let Some(secret) = password {
                    match secret.resolve() {
                        Ok(v) => target.password = Some(v),
                        Err(m) => err(&format!("{key}.password"), m),
                    }
                }
            }
            TargetSettings::Prometheus { url }
            | TargetSettings::Nats { url }
            | TargetSettings::Redis { url } => {
                if !url.contains("://") {
                    err(&format!("{key}.url"), format!("\"{url}\" is not a URL"));
                }
            }
            TargetSettings::Tcp { address } => {
                if !address.contains(':') {
                    err(
                        &format!("{key}.address"),
                        format!("\"{address}\" is not host:port"),
                    );
                }
            }
        }
        targets.insert(name.clone(), target);
    }

    let escalation = escalation::build(
        &settings.contacts,
        &settings.rotations,
        &settings.escalation,
        timezone.as_ref().copied().unwrap_or(chrono_tz::Tz::UTC),
        &settings.chat.platform,
        &mut err,
    );
    let pagers = escalation::pagers(&settings.pagers, &mut err);
    let (approval, commands) = actions::build(
        &settings.roles,
        &settings.approvals,
        &settings.actions,
        &mut err,
    );

    let targets_for_actions = targets.clone();
    let settings_actions = settings.actions.clone();
    match (listen, timezone, default_severity, escalation) {
        (Ok(listen), Ok(timezone), Ok(default_severity), Some(escalation)) if errors.is_empty() => {
            Ok(Config {
                targets,
                settings,
                listen,
                timezone,
                severity_map,
                default_severity,
                tokens,
                file,
                slack,
                discord,
                api_tokens,
                console,
                escalation: std::sync::Arc::new(escalation),
                pagers,
                approval: std::sync::Arc::new(approval),
                action_env: std::sync::Arc::new(crate::action::Env {
                    targets: targets_for_actions,
                    commands,
                    timeout: std::time::Duration::from_secs(settings_actions.timeout_s),
                    output_limit: settings_actions.output_limit,
                }),
            })
        }
        _ => {
            // In file order (escalation's cross-checks come last); those
            // without a line (set by the environment) after.
            errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
            Err(ConfigErrors(errors))
        }
    }
}

/// `[chat.slack]` checked and its secrets read; every mistake is named.
fn slack_config(chat: &ChatSettings, err: &mut impl FnMut(&str, String)) -> Option<SlackConfig> {
    let Some(s) = &chat.slack else {
        err(
            "chat.platform",
            "\"slack\" needs a [chat.slack] section with bot_token and signing_secret (HTTP mode) or app_token (mode = \"socket\")".into(),
        );
        return None;
    };
    let mut ok = true;
    let socket = match s.mode.as_str() {
        "http" => false,
        "socket" => true,
        other => {
            err(
                "chat.slack.mode",
                format!(
                    "\"{other}\" is not a mode; use \"http\" (Slack calls this server's public /slack/* URLs) or \"socket\" (Socket Mode: no public URL, needs app_token)"
                ),
            );
            ok = false;
            false
        }
    };
    for sev in &s.incident_channels {
        if sev.parse::<commands::Severity>().is_err() {
            err(
                "chat.slack.incident_channels",
                format!(
                    "{sev:?} is not a severity; list P1, P2 or P3 (or [] for no channels of their own)"
                ),
            );
            ok = false;
        }
    }
    for user in &s.responders {
        if !(user.starts_with('U') || user.starts_with('W'))
            || !user.chars().all(|c| c.is_ascii_alphanumeric())
        {
            err(
                "chat.slack.responders",
                format!(
                    "{user:?} is not a Slack user id; use the member id (U…), from the person's profile → ⋮ → Copy member ID"
                ),
            );
            ok = false;
        }
    }
    if !(chat.channel.starts_with('C') || chat.channel.starts_with('G'))
        || !chat.channel.chars().all(|c| c.is_ascii_alphanumeric())
    {
        err(
            "chat.channel",
            format!(
                "{:?} is not a Slack channel id; use the id (C…), shown in the channel's details in Slack",
                chat.channel
            ),
        );
        ok = false;
    }
    if s.answer_within_ms > 2_500 {
        err(
            "chat.slack.answer_within_ms",
            format!(
                "{} ms is too long: Slack gives up after 3,000 ms; at most 2500",
                s.answer_within_ms
            ),
        );
        ok = false;
    }
    let api_url = s.api_url.trim_end_matches('/').to_string();
    if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
        err(
            "chat.slack.api_url",
            format!("{:?} is not an http(s) URL", s.api_url),
        );
        ok = false;
    }
    let mut secret = |key: &str, r: &Option<SecretRef>, what: &str| match r {
        None => {
            err(
                &format!("chat.slack.{key}"),
                format!("is required: {what}, as {{ env = \"VAR\" }} or {{ file = \"/path\" }}"),
            );
            None
        }
        Some(r) => match r.resolve() {
            Ok(v) => Some(v),
            Err(m) => {
                err(&format!("chat.slack.{key}"), m);
                None
            }
        },
    };
    let bot_token = secret("bot_token", &s.bot_token, "the bot token (xoxb-…)");
    let mode = if socket {
        // Requests do not come over HTTP, so nothing needs the signing
        // secret; the app-level token opens the connection instead.
        secret(
            "app_token",
            &s.app_token,
            "Socket Mode needs the app-level token (xapp-…, Basic Information → App-Level Tokens, scope connections:write)",
        )
        .and_then(|app_token| match app_token_mistake(app_token.expose_secret()) {
            Some(m) => {
                err("chat.slack.app_token", m);
                None
            }
            None => Some(SlackMode::Socket { app_token }),
        })
    } else {
        secret(
            "signing_secret",
            &s.signing_secret,
            "HTTP mode checks every request to /slack/* with the app's signing secret (Basic Information → App Credentials); without a public URL use mode = \"socket\" and app_token instead",
        )
        .map(|signing_secret| SlackMode::Http { signing_secret })
    };
    match (bot_token, mode, ok) {
        (Some(bot_token), Some(mode), true) => Some(SlackConfig {
            bot_token,
            mode,
            api_url,
            answer_within: std::time::Duration::from_millis(s.answer_within_ms),
            incident_channels: s
                .incident_channels
                .iter()
                .filter_map(|v| v.parse::<commands::Severity>().ok())
                .map(|v| v.as_str().to_string())
                .collect(),
            responders: s.responders.clone(),
        }),
        _ => None,
    }
}

/// `[chat.discord]` checked and its secret read; every mistake is named.
fn discord_config(
    chat: &ChatSettings,
    err: &mut impl FnMut(&str, String),
) -> Option<DiscordConfig> {
    let Some(d) = &chat.discord else {
        err(
            "chat.platform",
            "\"discord\" needs a [chat.discord] section with bot_token, application_id, public_key and guild_id".into(),
        );
        return None;
    };
    let mut ok = true;
    let mut snowflake = |key: &str, value: &str, what: &str| -> Option<u64> {
        let parsed =
            (!value.is_empty() && value.len() <= 20 && value.chars().all(|c| c.is_ascii_digit()))
                .then(|| value.parse::<u64>().ok())
                .flatten()
                .filter(|v| *v != 0);
        if parsed.is_none() {
            let message = if value.is_empty() {
                format!("is required: {what}")
            } else {
                format!("{value:?} is not a Discord id (a number like 123456789012345678): {what}")
            };
            err(&format!("chat.discord.{key}"), message);
            ok = false;
        }
        parsed
    };
    let application_id = snowflake(
        "application_id",
        &d.application_id,
        "the application's id, from the Developer Portal (General Information → Application ID)",
    );
    let guild_id = snowflake(
        "guild_id",
        &d.guild_id,
        "the server's id (Discord: Server Settings → Widget → Server ID, or right-click the server → Copy Server ID)",
    );
    let public_key = match crate::chat::discord::public_key(&d.public_key) {
        Ok(key) => Some(key),
        Err(why) => {
            err("chat.discord.public_key", why);
            ok = false;
            None
        }
    };
    if d.answer_within_ms > 2_900 {
        err(
            "chat.discord.answer_within_ms",
            format!(
                "{} ms is too long: Discord gives up after 3,000 ms; at most 2900",
                d.answer_within_ms
            ),
        );
        ok = false;
    }
    if !(1..=3_600).contains(&d.max_age_s) {
        err(
            "chat.discord.max_age_s",
            "must be 1 to 3600 seconds (interactions signed longer ago are refused as replays; Discord sends them at once)".into(),
        );
        ok = false;
    }
    let channel = &chat.channel;
    if channel.is_empty() || channel.len() > 20 || !channel.chars().all(|c| c.is_ascii_digit()) {
        err(
            "chat.channel",
            format!(
                "{channel:?} is not a Discord channel id; use the id (a number like 123456789012345678: Discord's Developer Mode, then right-click the channel → Copy Channel ID)"
            ),
        );
        ok = false;
    }
    // serenity's URLs are `https://discord.com/api/v10/…`, and another
    // base stands in for `https://discord.com`: the base ends in `/api`.
    let api_url = d.api_url.trim_end_matches('/').to_string();
    if !(api_url.starts_with("https://") || api_url.starts_with("http://"))
        || !api_url.ends_with("/api")
    {
        err(
            "chat.discord.api_url",
            format!(
                "{:?} is not an http(s) URL ending in /api, like https://discord.com/api",
                d.api_url
            ),
        );
        ok = false;
    }
    let bot_token = match &d.bot_token {
        None => {
            err(
                "chat.discord.bot_token",
                "is required: the bot's token (Developer Portal → Bot → Reset Token), as { env = \"VAR\" } or { file = \"/path\" }".into(),
            );
            None
        }
        Some(r) => match r.resolve() {
            Ok(v) => Some(v),
            Err(m) => {
                err("chat.discord.bot_token", m);
                None
            }
        },
    };
    match (bot_token, application_id, guild_id, public_key, ok) {
        (Some(bot_token), Some(application_id), Some(guild_id), Some(public_key), true) => {
            Some(DiscordConfig {
                bot_token,
                application_id,
                public_key,
                guild_id,
                api_url,
                max_age: std::time::Duration::from_secs(d.max_age_s),
                answer_within: std::time::Duration::from_millis(d.answer_within_ms),
            })
        }
        _ => None,
    }
}

/// What is wrong with an app-level token, by its prefix only (the token is
/// never repeated).
fn app_token_mistake(token: &str) -> Option<String> {
    let token = token.trim();
    if token.starts_with("xapp-") {
        None
    } else if token.starts_with("xoxb-") {
        Some("looks like a bot token (xoxb-…); Socket Mode needs the app-level token (xapp-…), made under Basic Information → App-Level Tokens with the connections:write scope".into())
    } else {
        Some("is not an app-level token (those start with xapp-); make one under Basic Information → App-Level Tokens with the connections:write scope".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn no_file_and_no_environment_gives_the_embedded_default() {
        let c = load_with_env(None, Vec::new()).expect("defaults are valid");
        assert_eq!(c.settings.store.url, "sqlite://firstline.db");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.settings.chat.platform, "console");
        assert_eq!(c.severity_map.get("critical"), Some(&Severity::P1));
    }

    #[test]
    fn every_slack_mistake_is_named_with_its_key() {
        let bare = file("[chat]\nplatform = \"slack\"\n");
        let e = load_with_env(Some(bare.path()), Vec::new()).expect_err("no [chat.slack]");
        assert_eq!(e.0[0].key, "chat.platform");
        assert!(
            e.0[0].message.contains("[chat.slack]"),
            "{}",
            e.0[0].message
        );

        let wrong = file(
            "[chat]\nplatform = \"slack\"\nchannel = \"#incidents\"\n\n[chat.slack]\nmode = \"pigeon\"\nbot_token = { env = \"FIRSTLINE_TEST_NO_SUCH_VAR\" }\nincident_channels = [\"P1\", \"P4\"]\nresponders = [\"sam\"]\nanswer_within_ms = 5000\n",
        );
        let e = load_with_env(Some(wrong.path()), Vec::new()).expect_err("mistakes");
        let found: Vec<(&str, &str)> =
            e.0.iter()
                .map(|e| (e.key.as_str(), e.message.as_str()))
                .collect();
        let has =
            |key: &str, words: &str| found.iter().any(|(k, m)| *k == key && m.contains(words));
        assert!(
            has("chat.slack.mode", "\"socket\" (Socket Mode"),
            "{found:?}"
        );
        assert!(
            has("chat.slack.incident_channels", "\"P4\" is not a severity"),
            "{found:?}"
        );
        assert!(
            has("chat.slack.responders", "\"sam\" is not a Slack user id"),
            "{found:?}"
        );
        assert!(has("chat.channel", "not a Slack channel id"), "{found:?}");
        assert!(
            has("chat.slack.answer_within_ms", "at most 2500"),
            "{found:?}"
        );
        assert!(
            has(
                "chat.slack.bot_token",
                "FIRSTLINE_TEST_NO_SUCH_VAR is not set"
            ),
            "{found:?}"
        );
        assert!(
            has("chat.slack.signing_secret", "is required: HTTP mode"),
            "{found:?}"
        );
        assert!(
            !found
                .iter()
                .any(|(_, m)| m.contains("xoxb-") && m.len() > 200),
            "no secret echoed"
        );
    }

    #[test]
    fn every_discord_mistake_is_named_with_its_key() {
        let bare = file("[chat]\nplatform = \"discord\"\n");
        let e = load_with_env(Some(bare.path()), Vec::new()).expect_err("no [chat.discord]");
        assert_eq!(e.0[0].key, "chat.platform");
        assert!(
            e.0[0].message.contains("[chat.discord]"),
            "{}",
            e.0[0].message
        );

        let wrong = file(
            "[chat]\nplatform = \"discord\"\nchannel = \"#incidents\"\n\n[chat.discord]\nbot_token = { env = \"FIRSTLINE_TEST_NO_SUCH_VAR\" }\napplication_id = \"app\"\npublic_key = \"abcd\"\napi_url = \"ftp://discord.example\"\nmax_age_s = 0\nanswer_within_ms = 2901\n",
        );
        let e = load_with_env(Some(wrong.path()), Vec::new()).expect_err("mistakes");
        let found: Vec<(&str, &str, Option<usize>)> =
            e.0.iter()
                .map(|e| (e.key.as_str(), e.message.as_str(), e.line))
                .collect();
        let has =
            |key: &str, words: &str| found.iter().any(|(k, m, _)| *k == key && m.contains(words));
        assert!(
            has(
                "chat.discord.bot_token",
                "FIRSTLINE_TEST_NO_SUCH_VAR is not set"
            ),
            "{found:?}"
        );
        assert!(
            has("chat.discord.application_id", "\"app\" is not a Discord id"),
            "{found:?}"
        );
        assert!(has("chat.discord.guild_id", "is required"), "{found:?}");
        assert!(
            has("chat.discord.public_key", "not 64 hex digits"),
            "{found:?}"
        );
        assert!(has("chat.discord.api_url", "ending in /api"), "{found:?}");
        assert!(has("chat.discord.max_age_s", "1 to 3600"), "{found:?}");
        assert!(
            has("chat.discord.answer_within_ms", "at most 2900"),
            "{found:?}"
        );
        assert!(has("chat.channel", "not a Discord channel id"), "{found:?}");
        assert!(
            found
                .iter()
                .any(|(k, _, line)| *k == "chat.discord.public_key" && *line == Some(8)),
            "{found:?}"
        );
    }

    #[test]
    fn a_discord_application_is_read_with_its_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = dir.path().join("token");
        std::fs::write(&token, "discord-s3cret-token\n").expect("write");
        let f = file(&format!(
            "[chat]\nplatform = \"discord\"\nchannel = \"123456789012345678\"\n\n[chat.discord]\nbot_token = {{ file = \"{}\" }}\napplication_id = \"223456789012345678\"\npublic_key = \"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"\nguild_id = \"323456789012345678\"\n",
            token.display()
        ));
        let c = load_with_env(Some(f.path()), Vec::new()).expect("valid");
        let d = c.discord.as_ref().expect("discord");
        assert_eq!(d.application_id, 223456789012345678);
        assert_eq!(d.guild_id, 323456789012345678);
        assert_eq!(d.api_url, "https://discord.com/api");
        assert_eq!(d.max_age, std::time::Duration::from_secs(300));
        assert_eq!(d.answer_within, std::time::Duration::from_millis(2500));
        assert_eq!(d.bot_token.expose_secret(), "discord-s3cret-token");
        assert!(c.slack.is_none());
        assert!(!c.console.mounted);
        assert!(!format!("{c:?}").contains("s3cret"), "no secret in Debug");

        // Ids set from the environment read as numbers, and still count.
        let env = vec![
            (
                "FIRSTLINE_CHAT__DISCORD__GUILD_ID".to_string(),
                "423456789012345678".to_string(),
            ),
            (
                "FIRSTLINE_CHAT__CHANNEL".to_string(),
                "523456789012345678".to_string(),
            ),
        ];
        let c = load_with_env(Some(f.path()), env).expect("valid");
        assert_eq!(
            c.discord.as_ref().map(|d| d.guild_id),
            Some(423456789012345678)
        );
        assert_eq!(c.settings.chat.channel, "523456789012345678");
    }

    #[test]
    fn socket_mode_needs_an_app_level_token_and_no_signing_secret() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, value: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, value).expect("write secret");
            path.display().to_string()
        };
        let bot = write("bot", "xoxb-1-bot");
        let config = |app_token: Option<&str>| {
            let app = app_token
                .map(|path| format!("app_token = {{ file = \"{path}\" }}\n"))
                .unwrap_or_default();
            file(&format!(
                "[chat]\nplatform = \"slack\"\nchannel = \"C0INC\"\n\n[chat.slack]\nmode = \"socket\"\nbot_token = {{ file = \"{bot}\" }}\n{app}"
            ))
        };
        let shown = |f: &tempfile::NamedTempFile| {
            load_with_env(Some(f.path()), Vec::new())
                .expect_err("refused")
                .to_string()
        };

        // No app token: named, with where to make one.
        let missing = shown(&config(None));
        assert!(
            missing.contains(
                "chat.slack.app_token (line 5): is required: Socket Mode needs the app-level token (xapp-…"
            ),
            "{missing}"
        );
        assert!(missing.contains("connections:write"), "{missing}");
        assert!(!missing.contains("signing_secret"), "{missing}");

        // A bot token where the app token goes: said so, by its line.
        let swapped = shown(&config(Some(&write("swapped", "xoxb-2-secret-bot"))));
        assert!(
            swapped.contains("chat.slack.app_token (line 8): looks like a bot token (xoxb-…)"),
            "{swapped}"
        );
        assert!(
            !swapped.contains("secret-bot"),
            "no secret echoed: {swapped}"
        );
        let other = shown(&config(Some(&write("other", "hunter2"))));
        assert!(
            other.contains(
                "chat.slack.app_token (line 8): is not an app-level token (those start with xapp-)"
            ),
            "{other}"
        );
        assert!(!other.contains("hunter2"), "no secret echoed: {other}");

        // The app token alone is enough: no signing secret in Socket Mode.
        let good = config(Some(&write("app", "xapp-1-A0-1-abc")));
        let c = load_with_env(Some(good.path()), Vec::new()).expect("valid");
        let slack = c.slack.expect("slack");
        assert!(matches!(slack.mode, SlackMode::Socket { .. }));
    }

    #[test]
    fn http_mode_without_a_signing_secret_says_what_it_is_for() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bot = dir.path().join("bot");
        std::fs::write(&bot, "xoxb-1-bot").expect("write");
        let f = file(&format!(
            "[chat]\nplatform = \"slack\"\nchannel = \"C0INC\"\n\n[chat.slack]\nbot_token = {{ file = \"{}\" }}\n",
            bot.display()
        ));
        let e = load_with_env(Some(f.path()), Vec::new())
            .expect_err("no signing secret")
            .to_string();
        assert!(
            e.contains(
                "chat.slack.signing_secret (line 5): is required: HTTP mode checks every request to /slack/*"
            ),
            "{e}"
        );
        assert!(e.contains("mode = \"socket\""), "{e}");
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let f = file("[server]\nlisten = \"127.0.0.1:9000\"\n\n[store]\nurll = \"x\"\n");
        let e = load_with_env(Some(f.path()), Vec::new()).expect_err("unknown key");
        assert_eq!(e.0[0].key, "store.urll");
        assert_eq!(e.0[0].line, Some(5));
    }

    #[test]
    fn every_invalid_value_is_reported_at_once() {
        let f = file(
            "[server]\nlisten = \"nowhere\"\ntimezone = \"Mars/Base\"\n[log]\nformat = \"xml\"\n",
        );
        let e = load_with_env(Some(f.path()), Vec::new()).expect_err("invalid");
        let keys: Vec<_> = e.0.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert_eq!(
            keys,
            vec![
                ("server.listen", Some(2)),
                ("server.timezone", Some(3)),
                ("log.format", Some(5))
            ]
        );
    }

    #[test]
    fn the_environment_overrides_the_file_by_the_double_underscore_rule() {
        let f = file("[store]\nurl = \"sqlite://a.db\"\n");
        let env = vec![
            (
                "FIRSTLINE_STORE__URL".to_string(),
                "sqlite://b.db".to_string(),
            ),
            (
                "FIRSTLINE_INTAKE__MAX_RECEIPTS".to_string(),
                "5000".to_string(),
            ),
            ("FIRSTLINE_CONFIG".to_string(), "ignored.toml".to_string()),
            (
                "FIRSTLINE_AM_TOKEN".to_string(),
                "not a setting".to_string(),
            ),
        ];
        let c = load_with_env(Some(f.path()), env).expect("valid");
        assert_eq!(c.settings.store.url, "sqlite://b.db");
        assert_eq!(c.settings.intake.max_receipts, 5000);
    }

    #[test]
    fn parallel_runbook_runs_are_bounded_and_at_least_one() {
        let c = load_with_env(None, Vec::new()).expect("defaults are valid");
        assert_eq!(c.settings.runbooks.max_parallel_runs, 4);
        for bad in ["0", "65"] {
            let env = vec![(
                "FIRSTLINE_RUNBOOKS__MAX_PARALLEL_RUNS".to_string(),
                bad.to_string(),
            )];
            let e = load_with_env(None, env).expect_err("out of range");
            let text = e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>();
            assert!(
                text.iter()
                    .any(|t| t.contains("runbooks.max_parallel_runs")
                        && t.contains("must be 1 to 64")),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_secret_written_into_the_file_is_refused() {
        let f = file("[intake.tokens]\nalertmanager = \"hunter2\"\n");
        let e = load_with_env(Some(f.path()), Vec::new()).expect_err("inline secret");
        assert_eq!(e.0[0].line, Some(2));
        assert_eq!(e.0[0].key, "intake.tokens.alertmanager");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let env = vec![(
            "FIRSTLINE_INTAKE__TOKENS__GRAFANA".to_string(),
            "hunter3".to_string(),
        )];
        let e = load_with_env(None, env).expect_err("inline secret from env");
        assert!(!e.to_string().contains("hunter3"), "{e}");
    }

    #[test]
    fn api_and_console_tokens_are_read_and_a_bad_one_is_named_by_its_place() {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("api");
        std::fs::write(&secret, "s3cret-api\n").expect("write");
        let good = file(&format!(
            "[server]\napi_tokens = [{{ file = \"{0}\" }}, {{ file = \"{0}\" }}]\n\n[chat.console]\ntoken = {{ file = \"{0}\" }}\n",
            secret.display()
        ));
        let c = load_with_env(Some(good.path()), Vec::new()).expect("valid");
        assert_eq!(c.api_tokens.len(), 2);
        assert_eq!(c.api_tokens[0].expose_secret(), "s3cret-api");
        assert!(c.console.mounted);
        assert!(!format!("{c:?}").contains("s3cret"), "no secret in Debug");

        let bad = file(&format!(
            "[server]\napi_tokens = [\n  {{ file = \"{}\" }},\n  {{ env = \"FIRSTLINE_TEST_SURELY_UNSET_API\" }},\n]\n",
            secret.display()
        ));
        let e = load_with_env(Some(bad.path()), Vec::new()).expect_err("unset variable");
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].key, "server.api_tokens[1]");
        assert_eq!(e.0[0].line, Some(4));
        assert!(
            e.0[0]
                .message
                .contains("FIRSTLINE_TEST_SURELY_UNSET_API is not set")
        );
    }

    #[test]
    fn console_routes_follow_the_platform_unless_enabled() {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, "xoxb-1").expect("write");
            path.display().to_string()
        };
        let slack = format!(
            "[chat]\nplatform = \"slack\"\nchannel = \"C0INC\"\n\n[chat.slack]\nbot_token = {{ file = \"{}\" }}\nsigning_secret = {{ file = \"{}\" }}\n",
            secret("bot"),
            secret("signing")
        );
        let off = file(&slack);
        let c = load_with_env(Some(off.path()), Vec::new()).expect("valid");
        assert!(!c.console.mounted);
        let on = file(&format!("{slack}\n[chat.console]\nenabled = true\n"));
        let c = load_with_env(Some(on.path()), Vec::new()).expect("valid");
        assert!(c.console.mounted);
        assert!(c.console.token.is_none());
    }

    #[test]
    fn only_a_port_beyond_loopback_without_tokens_is_warned_about() {
        let c = load_with_env(None, Vec::new()).expect("defaults are valid");
        assert!(c.exposure_warnings().is_empty(), "loopback is private");

        let everywhere = vec![(
            "FIRSTLINE_SERVER__LISTEN".to_string(),
            "0.0.0.0:8080".to_string(),
        )];
        let c = load_with_env(None, everywhere.clone()).expect("valid");
        let w = c.exposure_warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("/api/* is readable by anyone who can reach 0.0.0.0:8080")
                && w[0].contains("server.api_tokens = [{ env = \"VAR\" }]"),
            "{w:?}"
        );
        assert!(
            w[1].starts_with("/console/* takes commands from anyone")
                && w[1].contains("chat.console.token"),
            "{w:?}"
        );

        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("t");
        std::fs::write(&secret, "t0ken").expect("write");
        let closed = file(&format!(
            "[server]\napi_tokens = [{{ file = \"{0}\" }}]\n\n[chat.console]\ntoken = {{ file = \"{0}\" }}\n",
            secret.display()
        ));
        let c = load_with_env(Some(closed.path()), everywhere).expect("valid");
        assert!(
            c.exposure_warnings().is_empty(),
            "{:?}",
            c.exposure_warnings()
        );
    }

    #[test]
    fn a_secret_reference_to_a_missing_variable_names_the_variable() {
        let f = file("[intake.tokens]\nalertmanager = { env = \"FIRSTLINE_TEST_SURELY_UNSET\" }\n");
        let e = load_with_env(Some(f.path()), Vec::new()).expect_err("missing env");
        assert_eq!(e.0[0].key, "intake.tokens.alertmanager");
        assert!(
            e.0[0]
                .message
                .contains("FIRSTLINE_TEST_SURELY_UNSET is not set")
        );
    }
}
