//! `[roles.*]`, `[approvals]` and `[actions]` as written, and their check:
//! [`build`] turns them into the approval rules and the commands actions
//! may run, or names every mistake by its key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::SecretRef;
use crate::action::CommandConfig;
use crate::approval::{Identity, Rules};
use crate::escalation::model::parse_duration;

/// `[roles.NAME]`: people who may approve the actions naming this role.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSettings {
    /// Platform identities: `"slack:U0123ABCD"`, `"discord:123456789012345678"`,
    /// `"console:sam"`.
    #[serde(default)]
    pub members: Vec<String>,
}

/// `[approvals]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalSettings {
    /// Roles that may approve an action that names none.
    pub default_approvers: Vec<String>,
    /// Approvals an action needs unless it says otherwise.
    pub quorum: u32,
    /// On a P1, the proposer's own approval does not count.
    pub two_person_p1: bool,
    /// The reaction that approves (emoji name, without colons).
    pub approve_emoji: String,
    /// The reaction that rejects.
    pub reject_emoji: String,
    /// A proposal not approved within this expires (`"15m"`).
    pub expire_after: String,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings {
            default_approvers: Vec::new(),
            quorum: 1,
            two_person_p1: true,
            approve_emoji: "white_check_mark".into(),
            reject_emoji: "x".into(),
            expire_after: "15m".into(),
        }
    }
}

/// `[actions]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionSettings {
    /// One execution's budget, in seconds.
    pub timeout_s: u64,
    /// Captured output kept per execution, in characters.
    pub output_limit: usize,
    /// After a `restart` plan's try, its health check runs this many
    /// seconds later.
    pub verify_after_s: u64,
    /// Programs `command` actions may run, by name.
    pub commands: BTreeMap<String, CommandSettings>,
}

impl Default for ActionSettings {
    fn default() -> Self {
        ActionSettings {
            timeout_s: 30,
            output_limit: 2000,
            verify_after_s: 5,
            commands: BTreeMap::new(),
        }
    }
}

/// `[actions.commands.NAME]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSettings {
    /// Program and arguments, never a shell line; an argument may be one
    /// whole placeholder (`"{{ params.component }}"`), never part of one.
    pub argv: Vec<String>,
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// Plain variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables from secret references.
    #[serde(default)]
    pub secret_env: BTreeMap<String, SecretRef>,
}

/// The checked rules and commands.
pub fn build(
    roles: &BTreeMap<String, RoleSettings>,
    approvals: &ApprovalSettings,
    actions: &ActionSettings,
    err: &mut impl FnMut(&str, String),
) -> (Rules, BTreeMap<String, CommandConfig>) {
    let mut rules = Rules {
        roles: BTreeMap::new(),
        default_approvers: approvals.default_approvers.clone(),
        quorum: approvals.quorum.max(1),
        two_person_p1: approvals.two_person_p1,
        approve_emoji: approvals.approve_emoji.trim_matches(':').to_string(),
        reject_emoji: approvals.reject_emoji.trim_matches(':').to_string(),
        expire_ms: 15 * 60_000,
    };
    for (name, role) in roles {
        if role.members.is_empty() {
            err(
                &format!("roles.{name}.members"),
                "is empty: list who holds the role, e.g. [\"slack:U0123ABCD\", \"console:sam\"]"
                    .into(),
            );
        }
        let mut members = Vec::new();
        for (i, m) in role.members.iter().enumerate() {
            match Identity::parse(m) {
                Ok(id) => members.push(id),
                Err(e) => err(&format!("roles.{name}.members[{i}]"), e),
            }
        }
        rules.roles.insert(name.clone(), members);
    }
    for (i, r) in approvals.default_approvers.iter().enumerate() {
        if !roles.contains_key(r) {
            err(
                &format!("approvals.default_approvers[{i}]"),
                format!("names no [roles.{r}]"),
            );
        }
    }
    if approvals.quorum == 0 {
        err("approvals.quorum", "must be at least 1".into());
    }
    if rules.approve_emoji.is_empty() || rules.approve_emoji == rules.reject_emoji {
        err(
            "approvals.approve_emoji",
            "must be an emoji name different from approvals.reject_emoji".into(),
        );
    }
    match parse_duration(&approvals.expire_after) {
        Ok(ms) if ms >= 1_000 => rules.expire_ms = ms,
        Ok(_) => err("approvals.expire_after", "must be at least 1s".into()),
        Err(e) => err("approvals.expire_after", e),
    }
    if !(1..=3_600).contains(&actions.timeout_s) {
        err("actions.timeout_s", "must be 1 to 3600 seconds".into());
    }
    let mut commands = BTreeMap::new();
    for (name, c) in &actions.commands {
        let key = format!("actions.commands.{name}");
        if c.argv.is_empty() || c.argv[0].trim().is_empty() {
            err(&format!("{key}.argv"), "must name a program".into());
            continue;
        }
        for (i, a) in c.argv.iter().enumerate() {
            let whole = a.trim();
            let is_whole_placeholder = whole.starts_with("{{")
                && whole.ends_with("}}")
                && whole.matches("{{").count() == 1;
            if (a.contains("{{") || a.contains("{%")) && (!is_whole_placeholder || i == 0) {
                err(
                    &format!("{key}.argv[{i}]"),
                    format!(
                        "{a:?}: a placeholder must be a whole argument (\"{{{{ params.x }}}}\"), and never the program"
                    ),
                );
            }
        }
        let mut secret_env = BTreeMap::new();
        for (var, r) in &c.secret_env {
            match r.resolve() {
                Ok(v) => {
                    secret_env.insert(var.clone(), v);
                }
                Err(m) => err(&format!("{key}.secret_env.{var}"), m),
            }
        }
        commands.insert(
            name.clone(),
            CommandConfig {
                argv: c.argv.clone(),
                workdir: c.workdir.clone(),
                env: c.env.clone(),
                secret_env,
            },
        );
    }
    (rules, commands)
}
