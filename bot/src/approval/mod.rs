//! Who may approve what: identities, roles, quorum, the two-person rule,
//! expiry, and the hash an approval is bound to. Pure: no IO, time from
//! arguments. The ledger (`incident::actions`) applies these rules in the
//! transaction that records a reaction.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// A person as a platform vouches for them: `slack:U0123ABCD`,
/// `discord:123…`, `console:sam`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    pub platform: String,
    pub user: String,
}

/// Platforms an identity may name.
pub const PLATFORMS: [&str; 3] = ["slack", "discord", "console"];

impl Identity {
    pub fn new(platform: &str, user: &str) -> Identity {
        Identity {
            platform: platform.to_string(),
            user: user.to_string(),
        }
    }

    /// `platform:user`, as written in `[roles.*] members`.
    pub fn parse(text: &str) -> Result<Identity, String> {
        let Some((platform, user)) = text.split_once(':') else {
            return Err(format!(
                "{text:?} is not platform:user (e.g. \"slack:U0123ABCD\", \"console:sam\")"
            ));
        };
        if !PLATFORMS.contains(&platform) {
            return Err(format!(
                "{text:?}: unknown platform {platform:?} (one of {})",
                PLATFORMS.join(", ")
            ));
        }
        let user = user.trim();
        if user.is_empty() || user.chars().any(char::is_whitespace) {
            return Err(format!("{text:?}: the user part is empty or has spaces"));
        }
        Ok(Identity::new(platform, user))
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.platform, self.user)
    }
}

/// The approval rules from `[roles.*]` and `[approvals]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Role name → members.
    pub roles: BTreeMap<String, Vec<Identity>>,
    pub default_approvers: Vec<String>,
    pub quorum: u32,
    pub two_person_p1: bool,
    pub approve_emoji: String,
    pub reject_emoji: String,
    /// A proposal not approved within this many milliseconds expires.
    pub expire_ms: i64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            roles: BTreeMap::new(),
            default_approvers: Vec::new(),
            quorum: 1,
            two_person_p1: true,
            approve_emoji: "white_check_mark".into(),
            reject_emoji: "x".into(),
            expire_ms: 15 * 60_000,
        }
    }
}

/// The hash an approval is bound to: the action's id and exactly what will
/// run (its described plan, which names the target and every parameter).
pub fn plan_hash(action_id: &str, described: &str) -> String {
    let mut h = Sha256::new();
    h.update(action_id.as_bytes());
    h.update([0]);
    h.update(described.as_bytes());
    hex::encode(&h.finalize()[..16])
}
