//! Incident channels: an incident of a severity listed in
//! `chat.slack.incident_channels` gets a channel of its own,
//! `#inc-<n>-<slug>`, created when its root is posted. The root stays in
//! `chat.channel` (state at a glance, buttons, updated in place) and links
//! to the channel; everything else about the incident (findings, updates)
//! is posted in its channel, where commands act on it without an id.
//! `chat.slack.responders` are invited at once, and whoever acknowledges is
//! invited when the root shows it.
//!
//! Such an incident's thread reference is `ROOTCHANNEL/TS@OWNCHANNEL`: the
//! root message, and where the rest goes. References stay opaque to the
//! core.

use slack_morphism::prelude::*;
use tracing::{info, warn};

use super::{Slack, api_code, blocks, chat_error, permanent};
use crate::chat::{ChatError, RootView};

/// Where an incident's messages after the root go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Thread<'a> {
    /// Replies under the root message `ts` in `channel`.
    Under { channel: &'a str, ts: &'a str },
    /// Messages in the incident's own channel; the root is `root`
    /// (`CHANNEL/TS`) in the incidents channel.
    Own { root: &'a str, channel: &'a str },
}

impl<'a> Thread<'a> {
    pub(super) fn parse(thread: &'a str) -> Result<Thread<'a>, ChatError> {
        let (root, own) = match thread.split_once('@') {
            Some((root, own)) => (root, Some(own)),
            None => (thread, None),
        };
        let (channel, ts) = super::split_ref(root)?;
        Ok(match own {
            Some(own) if !own.is_empty() => Thread::Own { root, channel: own },
            Some(_) => {
                return Err(permanent(format!(
                    "{thread:?} names no incident channel after '@'"
                )));
            }
            None => Thread::Under { channel, ts },
        })
    }

    /// The root message (`CHANNEL/TS`).
    pub(super) fn root(&self, thread: &'a str) -> &'a str {
        match self {
            Thread::Under { .. } => thread,
            Thread::Own { root, .. } => root,
        }
    }

    pub(super) fn own_channel(&self) -> Option<&'a str> {
        match self {
            Thread::Under { .. } => None,
            Thread::Own { channel, .. } => Some(channel),
        }
    }
}

/// `inc-7-db-connections-exhausted`: Slack's rules (lower case, digits,
/// `-` and `_`, at most 80 characters); a title with no such letters
/// (Japanese, say) leaves `inc-7`.
pub(super) fn channel_name(id: &str, title: &str) -> String {
    let n = id.trim_start_matches("INC-").to_ascii_lowercase();
    let mut slug = String::new();
    for c in title.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let mut name = format!("inc-{n}");
    let room = 80usize.saturating_sub(name.len() + 1 + 3);
    let slug: String = slug.chars().take(room).collect();
    let slug = slug.trim_end_matches('-');
    if !slug.is_empty() {
        name.push('-');
        name.push_str(slug);
    }
    name
}

impl Slack {
    /// Whether incidents of `severity` get a channel of their own.
    pub(super) fn wants_own_channel(&self, severity: &str) -> bool {
        self.inner.incident_channels.iter().any(|s| s == severity)
    }

    /// The incident's own channel: made once (a retried root reuses the
    /// one this process made), with the responders invited and the
    /// opening posted in it. A name already taken (a channel made before a
    /// crash, or by someone else) gets `-2`, `-3`, … .
    pub(super) async fn own_channel(
        &self,
        root: &RootView,
        opening: &str,
    ) -> Result<String, ChatError> {
        if let Some(c) = self.made(&root.id) {
            return Ok(c);
        }
        let base = channel_name(&root.id, &root.title);
        let session = self.inner.client.open_session(&self.inner.token);
        let mut made = None;
        for attempt in 1..=5 {
            let name = if attempt == 1 {
                base.clone()
            } else {
                format!("{base}-{attempt}")
            };
            self.pace("conversations.create", "").await;
            let req = SlackApiConversationsCreateRequest::new(name.clone());
            match session.conversations_create(&req).await {
                Ok(answer) => {
                    made = Some((answer.channel.id.to_string(), name));
                    break;
                }
                Err(e) if api_code(&e) == Some("name_taken") => continue,
                Err(e) if api_code(&e) == Some("missing_scope") => {
                    return Err(permanent(
                        "the Slack app lacks the channels:manage scope to make incident channels: reinstall it from deploy/slack/manifest.yaml".into(),
                    ));
                }
                Err(e) => return Err(chat_error(e)),
            }
        }
        let Some((channel, name)) = made else {
            return Err(permanent(format!(
                "Slack says #{base} and its -2…-5 variants are all taken; rename or archive the old ones"
            )));
        };
        info!(incident = %root.id, channel = %channel, name = %name, "incident channel created");
        self.remember(&root.id, &channel);
        if !self.inner.responders.is_empty() {
            let users: Vec<String> = self.inner.responders.clone();
            self.invite(&channel, &users).await;
        }
        self.post_message(&channel, None, blocks::literal(opening)?)
            .await?;
        Ok(channel)
    }

    /// Invites `users` to `channel`; one already there, or one Slack does
    /// not know, is logged, not an error (the incident goes on either way).
    pub(super) async fn invite(&self, channel: &str, users: &[String]) {
        let users: Vec<String> = users
            .iter()
            .filter(|u| self.not_invited(channel, u))
            .cloned()
            .collect();
        if users.is_empty() {
            return;
        }
        self.pace("conversations.invite", channel).await;
        let session = self.inner.client.open_session(&self.inner.token);
        let req = SlackApiConversationsInviteRequest::new(
            SlackChannelId::new(channel.to_string()),
            users.iter().map(|u| SlackUserId::new(u.clone())).collect(),
        );
        match session.conversations_invite(&req).await {
            Ok(_) => {}
            Err(e) if api_code(&e) == Some("already_in_channel") => {}
            Err(e) => {
                warn!(channel, users = ?users, error = %chat_error(e), "could not invite to the incident channel");
            }
        }
    }

    /// The incident `channel` belongs to, if it is an incident channel
    /// (commands typed there act on it without an id). The incidents
    /// channel itself belongs to none; a store that does not answer leaves
    /// the command to name its incident.
    pub async fn incident_of_channel(
        &self,
        store: &crate::store::Store,
        channel: &str,
    ) -> Option<i64> {
        if self.inner.main_channel.get().is_some_and(|c| c == channel) {
            return None;
        }
        store
            .incident_by_thread_suffix(&format!("@{channel}"))
            .await
            .map_err(|e| warn!(error = %e, "could not look up the channel's incident"))
            .ok()
            .flatten()
    }

    fn made(&self, incident: &str) -> Option<String> {
        self.inner
            .own_channels
            .lock()
            .ok()
            .and_then(|m| m.get(incident).cloned())
    }

    fn remember(&self, incident: &str, channel: &str) {
        if let Ok(mut m) = self.inner.own_channels.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(incident.to_string(), channel.to_string());
        }
    }

    /// True the first time (`channel`, `user`) is asked about.
    fn not_invited(&self, channel: &str, user: &str) -> bool {
        match self.inner.invited.lock() {
            Ok(mut set) => {
                if set.len() > 100_000 {
                    set.clear();
                }
                set.insert((channel.to_string(), user.to_string()))
            }
            Err(_) => true,
        }
    }
}

/// `sam (slack:U0SAM)` → `U0SAM`: the Slack user an actor names.
pub(super) fn slack_user(actor: &str) -> Option<&str> {
    let start = actor.find("slack:")? + "slack:".len();
    let rest = &actor[start..];
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_slacks_rules() {
        assert_eq!(
            channel_name("INC-7", "DB connections exhausted (orders)"),
            "inc-7-db-connections-exhausted-orders"
        );
        assert_eq!(channel_name("INC-12", "通知ワーカー停止"), "inc-12");
        let long = channel_name("INC-123456", &"x".repeat(200));
        assert!(long.len() <= 80 - 3, "{long}");
        assert!(long.starts_with("inc-123456-xxx"));
    }

    #[test]
    fn thread_refs_say_where_messages_go() {
        assert_eq!(
            Thread::parse("C0INC/1.2").ok(),
            Some(Thread::Under {
                channel: "C0INC",
                ts: "1.2"
            })
        );
        let own = Thread::parse("C0INC/1.2@C0OWN").expect("own");
        assert_eq!(own.own_channel(), Some("C0OWN"));
        assert_eq!(own.root("C0INC/1.2@C0OWN"), "C0INC/1.2");
        assert!(Thread::parse("C0INC/1.2@").is_err());
        assert!(Thread::parse("nonsense").is_err());
    }

    #[test]
    fn the_slack_user_of_an_actor() {
        assert_eq!(slack_user("sam (slack:U0SAM)"), Some("U0SAM"));
        assert_eq!(slack_user("slack:W12"), Some("W12"));
        assert_eq!(slack_user("console:sam"), None);
    }
}
