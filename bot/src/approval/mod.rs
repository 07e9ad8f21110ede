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

/// What a reaction means on a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vote {
    Approve,
    Reject,
}

impl Vote {
    pub fn as_str(self) -> &'static str {
        match self {
            Vote::Approve => "approve",
            Vote::Reject => "reject",
        }
    }
}

/// An emoji name as platforms send it, without colons or a skin tone
/// (`:white_check_mark::skin-tone-2:` is `white_check_mark`).
pub fn bare_emoji(emoji: &str) -> &str {
    let e = emoji.trim().trim_matches(':');
    e.split("::").next().unwrap_or(e)
}

impl Rules {
    /// The vote a reaction casts, if any.
    pub fn vote_of(&self, emoji: &str) -> Option<Vote> {
        let e = bare_emoji(emoji);
        if e == self.approve_emoji {
            Some(Vote::Approve)
        } else if e == self.reject_emoji {
            Some(Vote::Reject)
        } else {
            None
        }
    }

    /// The roles that may approve an action declaring `declared`.
    pub fn approver_roles(&self, declared: &[String]) -> Vec<String> {
        if declared.is_empty() {
            self.default_approvers.clone()
        } else {
            declared.to_vec()
        }
    }

    /// Whether `who` holds one of `roles`.
    pub fn holds_any(&self, roles: &[String], who: &Identity) -> bool {
        roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .any(|members| members.contains(who))
    }

    /// `fixers (console:sam, slack:U0123)`, for proposals.
    pub fn describe_roles(&self, roles: &[String]) -> String {
        if roles.is_empty() {
            return "nobody (no role is configured to approve it)".into();
        }
        roles
            .iter()
            .map(|r| match self.roles.get(r) {
                Some(m) => {
                    let names: Vec<String> = m.iter().map(Identity::to_string).collect();
                    format!("{r} ({})", names.join(", "))
                }
                None => format!("{r} (no such role configured)"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why a vote does not count, if it does not.
pub fn refusal(
    rules: &Rules,
    roles: &[String],
    vote: Vote,
    who: Option<&Identity>,
    proposer: Option<&Identity>,
    two_person: bool,
) -> Option<String> {
    let Some(who) = who else {
        return Some(
            "it came through a route that does not vouch for who sent it (/console/reactions without [chat.console] token); react in Slack, or at the console's terminal".into(),
        );
    };
    let is_proposer = proposer == Some(who);
    match vote {
        // The proposer may always take their own proposal back.
        Vote::Reject if is_proposer => None,
        _ if !rules.holds_any(roles, who) => Some(format!(
            "{who} holds none of the roles that may approve it ({})",
            if roles.is_empty() {
                "none configured".to_string()
            } else {
                roles.join(", ")
            }
        )),
        Vote::Approve if two_person && is_proposer => Some(
            "on a P1 the proposer's own approval does not count (two-person rule); another approver is needed".into(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        let mut r = Rules::default();
        r.roles.insert(
            "fixers".into(),
            vec![
                Identity::new("slack", "U1"),
                Identity::new("console", "sam"),
            ],
        );
        r.default_approvers = vec!["fixers".into()];
        r
    }

    #[test]
    fn identities_parse_and_refuse_what_is_not_platform_user() {
        assert_eq!(
            Identity::parse("slack:U1").map(|i| i.to_string()),
            Ok("slack:U1".into())
        );
        assert!(Identity::parse("sam").is_err());
        assert!(Identity::parse("irc:sam").is_err());
        assert!(Identity::parse("console:").is_err());
    }

    #[test]
    fn emoji_with_colons_or_skin_tone_votes() {
        let r = rules();
        assert_eq!(
            r.vote_of(":white_check_mark::skin-tone-3:"),
            Some(Vote::Approve)
        );
        assert_eq!(r.vote_of("x"), Some(Vote::Reject));
        assert_eq!(r.vote_of("eyes"), None);
    }

    #[test]
    fn only_role_holders_vouched_for_count() {
        let r = rules();
        let roles = r.approver_roles(&[]);
        let sam = Identity::new("console", "sam");
        let bob = Identity::new("slack", "U9");
        assert_eq!(
            refusal(&r, &roles, Vote::Approve, Some(&sam), None, false),
            None
        );
        assert!(
            refusal(&r, &roles, Vote::Approve, Some(&bob), None, false)
                .is_some_and(|m| m.contains("slack:U9 holds none"))
        );
        assert!(
            refusal(&r, &roles, Vote::Approve, None, None, false)
                .is_some_and(|m| m.contains("does not vouch"))
        );
        // A Slack approver's name typed at an unvouched route is nobody.
        assert!(refusal(&r, &roles, Vote::Approve, None, None, false).is_some());
    }

    #[test]
    fn the_proposer_alone_cannot_approve_under_the_two_person_rule() {
        let r = rules();
        let roles = r.approver_roles(&[]);
        let sam = Identity::new("console", "sam");
        assert!(refusal(&r, &roles, Vote::Approve, Some(&sam), Some(&sam), true).is_some());
        assert_eq!(
            refusal(&r, &roles, Vote::Approve, Some(&sam), Some(&sam), false),
            None
        );
        assert_eq!(
            refusal(&r, &roles, Vote::Reject, Some(&sam), Some(&sam), true),
            None
        );
    }

    #[test]
    fn the_hash_follows_what_will_run() {
        assert_eq!(plan_hash("a", "x"), plan_hash("a", "x"));
        assert_ne!(plan_hash("a", "x"), plan_hash("a", "y"));
        assert_ne!(plan_hash("a", "x"), plan_hash("b", "x"));
    }
}
