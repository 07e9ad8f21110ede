//! The runbook file format (version 1), as serde reads it. TOML, because
//! the seeds' SQL and PromQL sit naturally in multi-line literal strings,
//! comments are allowed, and the parser reports line numbers (see
//! ARCHITECTURE.md for the choice).
//!
//! ```toml
//! version = 1
//! id = "notifications-not-delivered"
//! title = "通知が届かない"                   # original language
//! title_en = "Notifications are not delivered"
//! severity = "P2"
//! failure_modes = ["FM-OB-01", "FM-NATS-01", "FM-NOTI-03"]
//! source = { seed = "001_1d45dcad95843ddb.txt", section = "4.1" }
//!
//! [match]
//! alertname = ["NotificationBacklogHigh"]
//! labels = [{ name = "service", op = "=~", value = "notification.*" }]
//!
//! [[checks]]
//! id = "backlog"
//! title = "Notification backlog (PENDING / PROCESSING)"
//! probe = { kind = "sql", target = "notification_db", query = "SELECT …" }
//! expect = [{ path = "scalar", warn_if = "> 0", fail_if = "> 100" }]
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::probe::ProbeSpec;

/// One runbook file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    /// Format version; only 1 exists.
    pub version: u32,
    /// Unique id, lower-case with dashes: what `/runbook run ID` takes.
    pub id: String,
    /// Title in the seed's language.
    pub title: String,
    /// English title beside it.
    pub title_en: String,
    /// Where the runbook comes from.
    pub source: SourceRef,
    /// Failure-mode ids (FM-… from seed 002) this runbook covers.
    #[serde(default)]
    pub failure_modes: Vec<String>,
    /// Severity of an incident this runbook opens (P1/P2/P3).
    pub severity: String,
    /// One paragraph: what this runbook is for, in English.
    #[serde(default)]
    pub summary: Option<String>,
    /// Which alerts trigger it.
    #[serde(default, rename = "match")]
    pub matcher: MatchRules,
    /// Checks in the seed's order: the order is the triage logic.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// First-response actions, reversible ones first (seed 002 §3.2).
    /// Declared here; run only after an approval.
    #[serde(default)]
    pub actions: Vec<ActionDecl>,
    /// The conclusions the seed draws from what the checks found, most
    /// specific first: the first whose conditions all hold ends the
    /// findings post (a verdict without conditions always applies, so it
    /// goes last).
    #[serde(default)]
    pub verdicts: Vec<Verdict>,
    /// When the incident counts as mitigated.
    #[serde(default)]
    pub recovery: Vec<RecoveryCriterion>,
    /// Triage notes kept from the seed (decision tables, reason classes).
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub links: Vec<Link>,
}

/// A seed file and section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRef {
    pub seed: String,
    pub section: String,
}

/// Alert matching: any listed alert name (none listed: any), and every
/// label matcher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRules {
    #[serde(default)]
    pub alertname: Vec<String>,
    #[serde(default)]
    pub labels: Vec<LabelMatcher>,
}

/// `name op value`, with Prometheus' operators: `=`, `!=`, `=~`, `!~`
/// (regexes fully anchored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabelMatcher {
    pub name: String,
    #[serde(default = "default_op")]
    pub op: String,
    pub value: String,
}

fn default_op() -> String {
    "=".into()
}

/// One check: a probe and the expectations its observation is held to.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Unique within the runbook.
    pub id: String,
    /// As the seed words it.
    pub title: String,
    #[serde(default)]
    pub title_en: Option<String>,
    pub probe: ProbeSpec,
    /// Thresholds; a check without any must say `informational = true`.
    #[serde(default)]
    pub expect: Vec<Expectation>,
    /// Evidence only: ok unless the probe fails.
    #[serde(default)]
    pub informational: bool,
    /// When the probe's evidence (a table, the records, the answer) is shown
    /// in the findings post: `always`, `problem` (only when the check is not
    /// ok) or `never`. Default: `always` for an informational check (its
    /// evidence is the answer), `problem` otherwise.
    #[serde(default)]
    pub show_evidence: Option<String>,
    /// Probe budget, milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5_000
}

/// A threshold on one value of the observation. `path` selects it
/// (`body.by_status.failed`, `rows.0.count`, `rows[status=PENDING].count`,
/// `consumer.backlog`, `count(body.items[retryable=true])`,
/// `ratio(a.sum, b.sum)`); `warn_if` / `fail_if` are conditions such as
/// `> 100`, `!= 200`, `== "ok"`, `< 0.999`.
///
/// A value that is not there (the path selects nothing, it is null, or the
/// probe got no data at all, such as a Prometheus query without series) is
/// never ok by itself: the check is `error` ("no data") unless `missing`
/// says what absence means.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub path: String,
    #[serde(default)]
    pub warn_if: Option<String>,
    #[serde(default)]
    pub fail_if: Option<String>,
    /// What a breach means, shown with the finding.
    #[serde(default)]
    pub meaning: Option<String>,
    /// What it means when there is no value: `"ok"`, `"warn"`, `"fail"`, or
    /// a number that stands in for it (`0`: a count the answer omits when
    /// it is zero).
    #[serde(default)]
    pub missing: Option<Missing>,
}

/// What absence of a value means (see [`Expectation::missing`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Missing {
    Number(f64),
    Word(String),
}

/// Words `missing` takes.
pub const MISSING_WORDS: [&str; 3] = ["ok", "warn", "fail"];

/// A conclusion the seed draws (seed 003: every service down → P1, propose
/// the emergency rollback). It applies when all of `when` hold.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    pub id: String,
    /// As the seed words it.
    pub title: String,
    #[serde(default)]
    pub title_en: Option<String>,
    /// Conditions over the checks' outcomes; all must hold. Empty: always.
    #[serde(default)]
    pub when: Vec<VerdictCondition>,
    /// The action (an `[[actions]]` id) the verdict points to.
    #[serde(default)]
    pub action: Option<String>,
    /// The severity the seed gives this situation, when it differs
    /// (shown as advice; `/incident sev` changes it).
    #[serde(default)]
    pub severity: Option<String>,
}

/// One condition of a verdict: the outcome of one or several checks
/// (`status`: `ok`, `warn` (warn or fail), `fail`, `error`), or a value of
/// one check's observation held to a condition (`path` and `is`, as in
/// expectations: `is = "== 1"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictCondition {
    /// Every one of these checks must meet the condition.
    pub checks: Vec<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub is: Option<String>,
}

/// Outcomes a verdict condition's `status` takes.
pub const VERDICT_STATUSES: [&str; 4] = ["ok", "warn", "fail", "error"];

/// A first-response action: proposed in the incident thread, run only
/// once approved (see `approval/` and `action/`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionDecl {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub title_en: Option<String>,
    /// `restart`, `throttle`, `rollback`, `republish`, `config_fix`,
    /// `data_fix`, `manual`.
    pub kind: String,
    /// Can it be undone easily (restart, parallelism, routing)? Offered first.
    pub reversible: bool,
    /// Values for the `run` spec's `{{ params.x }}` placeholders (a
    /// proposal's `key=value` words override them), and notes for people
    /// where there is no `run`. A value may itself hold `{{ labels.x }}`
    /// and `{{ incident }}` placeholders (`component = "{{ labels.service }}"`),
    /// rendered before the run spec; never `{{ params.… }}`.
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// How it runs (`http`, `command`, `nats_publish`, `sql`); without it
    /// the action is a manual checklist item someone ticks.
    #[serde(default)]
    pub run: Option<crate::action::RunSpec>,
    /// Roles (`[roles.NAME]` in the configuration) whose members may
    /// approve it; `[approvals] default_approvers` when empty.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Approvals needed (default `[approvals] quorum`, 1).
    #[serde(default)]
    pub quorum: Option<u32>,
    /// The retry plan one approval covers: `backoff` (again after 30 s,
    /// 60 s and 120 s, same idempotency key; seed 000) or `restart` (up to
    /// 3 tries, `verify` checked after each; seed 003). None: one try.
    #[serde(default)]
    pub retry: Option<String>,
    /// A check of this runbook re-run after each try of a `restart` plan:
    /// the try worked when it passes.
    #[serde(default)]
    pub verify: Option<String>,
}

/// Retry plans an action may declare.
pub const RETRY_PLANS: [&str; 2] = ["backoff", "restart"];

/// A recovery criterion, judged over repeated samples of one check's value.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryCriterion {
    /// As the seed words it (`backlog が減少傾向`).
    pub title: String,
    /// The check whose probe is re-run.
    pub check: String,
    /// The value followed, as in expectations.
    pub path: String,
    /// `decreasing`, `not_increasing`, or `below` (needs `threshold`).
    pub trend: String,
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Samples judged (at least 2 for a trend).
    #[serde(default = "default_samples")]
    pub samples: u32,
    #[serde(default = "default_interval_s")]
    pub interval_s: u64,
}

fn default_samples() -> u32 {
    3
}

fn default_interval_s() -> u64 {
    60
}

/// A link shown with the runbook.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub title: String,
    pub url: String,
}

/// Action kinds the format knows.
pub const ACTION_KINDS: [&str; 7] = [
    "restart",
    "throttle",
    "rollback",
    "republish",
    "config_fix",
    "data_fix",
    "manual",
];

/// Trend kinds the format knows.
pub const TRENDS: [&str; 5] = [
    "decreasing",
    "not_increasing",
    "below",
    "increasing",
    "above",
];

/// `show_evidence` values.
pub const SHOW_EVIDENCE: [&str; 3] = ["always", "problem", "never"];
