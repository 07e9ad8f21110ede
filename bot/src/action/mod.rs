//! Remediation actions: what an approved proposal runs. One file per kind
//! (`http`, `command`, `nats_publish`, `sql`), each turning its runbook
//! spec into a [`Plan`] (everything rendered and resolved, secrets masked
//! in what is shown) and a plan into an [`Outcome`].
//!
//! Invariants: nothing here decides whether an action may run; that is the
//! approval flow's job (`approval/`, `incident/`), and this module is only
//! reached from an approved proposal's `action` outbox item. Every
//! execution is bounded by its timeout; output is trimmed and every secret
//! the plan could see is masked in it.

pub mod command;
pub mod http;
pub mod nats_publish;
pub mod sql;
pub mod worker;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::runbook::run::Targets;

/// How an action runs, as written in a runbook (`[actions.run]`,
/// `kind = "http"` etc.). String fields may hold `{{ params.x }}`,
/// `{{ labels.x }}` and `{{ incident }}` placeholders, rendered when the
/// action is proposed. An action without `run` is a manual checklist item.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunSpec {
    Http(http::HttpAction),
    Command(command::CommandAction),
    NatsPublish(nats_publish::NatsPublishAction),
    Sql(sql::SqlAction),
}

impl RunSpec {
    /// `http`, `command`, `nats_publish`, `sql`: for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            RunSpec::Http(_) => "http",
            RunSpec::Command(_) => "command",
            RunSpec::NatsPublish(_) => "nats_publish",
            RunSpec::Sql(_) => "sql",
        }
    }
}

/// Values placeholders are rendered from.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Vars {
    /// The action's `params`, then the proposal's `key=value` words.
    pub params: BTreeMap<String, String>,
    /// The incident's alert labels.
    pub labels: BTreeMap<String, String>,
    /// `INC-7`.
    pub incident: String,
}

/// One allowlisted command (`[actions.commands.NAME]`), secrets resolved.
#[derive(Debug, Clone)]
pub struct CommandConfig {
    /// Program and arguments; an argument may be a whole `{{ params.x }}`
    /// placeholder, never part of one.
    pub argv: Vec<String>,
    pub workdir: Option<PathBuf>,
    /// Plain environment variables.
    pub env: BTreeMap<String, String>,
    /// Environment variables read from secret references.
    pub secret_env: BTreeMap<String, SecretString>,
}

/// What actions may reach: the configured targets and commands.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub targets: Targets,
    pub commands: BTreeMap<String, CommandConfig>,
    /// Each execution's budget.
    pub timeout: Duration,
    /// Captured output kept (characters), after masking.
    pub output_limit: usize,
}

impl Env {
    /// Every secret value an action could put in its output.
    fn secrets(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for t in self.targets.values() {
            out.extend(t.secret_headers.values().map(|s| s.expose_secret()));
            out.extend(t.password.iter().map(|s| s.expose_secret()));
        }
        for c in self.commands.values() {
            out.extend(c.secret_env.values().map(|s| s.expose_secret()));
        }
        out.retain(|s| s.len() >= 4);
        // Longest first, so a secret containing another is masked whole.
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out
    }

    /// `text` with every known secret replaced by `••••`, trimmed to
    /// `output_limit` characters.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets() {
            if out.contains(s) {
                out = out.replace(s, "••••");
            }
        }
        crate::text::clip(&out, self.output_limit.max(1)).into_owned()
    }
}

/// An action ready to run: every placeholder rendered, every name looked
/// up. Carries no secret values (they are read from [`Env`] when it runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Plan {
    Http(http::HttpPlan),
    Command(command::CommandPlan),
    NatsPublish(nats_publish::NatsPublishPlan),
    Sql(sql::SqlPlan),
}

impl Plan {
    pub fn kind(&self) -> &'static str {
        match self {
            Plan::Http(_) => "http",
            Plan::Command(_) => "command",
            Plan::NatsPublish(_) => "nats_publish",
            Plan::Sql(_) => "sql",
        }
    }

    /// Exactly what will run, for people: the request, argv, statement or
    /// publish, and against what (URLs redacted, secrets as `••••`). An
    /// approval is bound to a hash of this text.
    pub fn describe(&self) -> String {
        match self {
            Plan::Http(p) => p.describe(),
            Plan::Command(p) => p.describe(),
            Plan::NatsPublish(p) => p.describe(),
            Plan::Sql(p) => p.describe(),
        }
    }
}

/// Renders `spec` with `vars` and resolves its names in `env`: the error
/// names what is missing (an unknown target or command, a placeholder
/// without a value, a target of the wrong kind).
pub fn prepare(spec: &RunSpec, vars: &Vars, env: &Env) -> Result<Plan, String> {
    match spec {
        RunSpec::Http(s) => http::prepare(s, vars, env).map(Plan::Http),
        RunSpec::Command(s) => command::prepare(s, vars, env).map(Plan::Command),
        RunSpec::NatsPublish(s) => nats_publish::prepare(s, vars, env).map(Plan::NatsPublish),
        RunSpec::Sql(s) => sql::prepare(s, vars, env).map(Plan::Sql),
    }
}

/// What one execution did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The action did what it is for (the expected status, exit code 0,
    /// the statement committed, the messages published).
    pub ok: bool,
    /// One line for the thread: `HTTP 202 in 41 ms`, `exit 0`,
    /// `3 rows updated, committed`, `5 published, 2 dropped as duplicates`.
    pub summary: String,
    /// Captured output (response body, stdout/stderr, …), masked and trimmed.
    pub output: String,
    /// A failure that trying again could change (a timeout, a 503, a
    /// refused connection), as opposed to one that needs a person (a 400,
    /// a row ceiling exceeded, an unknown command).
    pub retryable: bool,
}

/// Runs a plan once. `key` is the execution's idempotency key, the same for
/// every retry of one approval (sent as `Idempotency-Key` over HTTP, and
/// the base of NATS message ids).
pub async fn execute(plan: &Plan, env: &Env, key: &str) -> Outcome {
    let work = async {
        match plan {
            Plan::Http(p) => http::execute(p, env, key).await,
            Plan::Command(p) => command::execute(p, env, key).await,
            Plan::NatsPublish(p) => nats_publish::execute(p, env, key).await,
            Plan::Sql(p) => sql::execute(p, env, key).await,
        }
    };
    // Each kind also passes the budget to its client; this is the backstop.
    let budget = env.timeout + Duration::from_secs(2);
    match tokio::time::timeout(budget, work).await {
        Ok(mut o) => {
            o.output = env.mask(&o.output);
            o.summary = env.mask(&o.summary);
            o
        }
        Err(_) => Outcome {
            ok: false,
            summary: format!("timed out after {} s", env.timeout.as_secs()),
            output: String::new(),
            retryable: true,
        },
    }
}

/// Renders one template string with minijinja (undefined values are
/// errors, never empty strings).
pub fn render(template: &str, vars: &Vars) -> Result<String, String> {
    if !template.contains("{{") && !template.contains("{%") {
        return Ok(template.to_string());
    }
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let ctx = minijinja::context! {
        params => &vars.params,
        labels => &vars.labels,
        incident => &vars.incident,
    };
    env.render_str(template, ctx)
        .map_err(|e| format!("placeholder in {template:?}: {e}"))
}
