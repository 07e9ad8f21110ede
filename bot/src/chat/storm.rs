//! Storm mode: when incidents open faster than a channel can carry their
//! root posts, one summary stands for them.
//!
//! A storm starts in a channel when more than `chat.storm_threshold`
//! incidents opened within the last `chat.storm_window_s` (a minute). While it lasts, a new
//! incident's root post is *held*: its outbox item waits with status
//! `held` (its later posts wait behind it, as they do behind any item), and
//! the storm's summary message in the channel, posted once and updated in
//! place, counts it (severities, alert names, services, the newest few).
//! An incident is not held, or is released at once, when it is P1 or when
//! a person acts on it (the ledger releases it in the same transaction as
//! the change). When a window passes with no more than the threshold of
//! new incidents, the storm ends and the summary says so; the held roots
//! then follow, oldest first, one every [`RELEASE_EVERY`] (half of Slack's
//! pace for a channel), so a new incident's thread still gets through
//! while they drain.
//!
//! Everything is in the store (the `storms` row and the held outbox
//! items), so a restart in the middle of a storm loses nothing: the watch
//! picks the storm up where it was.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

use super::ChatPlatform;
use super::messages::Messages;
use crate::domain::Severity;
use crate::domain::incident::Incident;
use crate::domain::time::{Clock, Millis};
use crate::store::{Store, StoreError, Storm};

/// The summary is updated at most this often (Slack's `chat.update` is a
/// tier-3 method: about 50 a minute).
const SHOW_EVERY: Duration = Duration::from_secs(3);
/// After a storm, one held root is let go this often.
pub const RELEASE_EVERY: Duration = Duration::from_secs(2);
/// How often the watch looks at the storms under way.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Distinct alert names or services counted by name; the rest are "other".
const TALLY_KEYS: usize = 100;
/// Newest held incidents the summary names.
const NEWEST: usize = 5;
/// Entries per line of the summary.
const TOP: usize = 5;

/// What a storm's summary counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    #[serde(default)]
    pub severities: BTreeMap<String, i64>,
    #[serde(default)]
    pub alertnames: BTreeMap<String, i64>,
    #[serde(default)]
    pub services: BTreeMap<String, i64>,
    /// Held incidents whose alert name or service was not counted by name
    /// (beyond [`TALLY_KEYS`] distinct ones).
    #[serde(default)]
    pub other_alertnames: i64,
    #[serde(default)]
    pub other_services: i64,
    /// `INC-7 [P2] title`, newest first.
    #[serde(default)]
    pub newest: Vec<String>,
}

impl Tally {
    /// Counts one more held incident.
    pub fn add(&mut self, inc: &Incident) {
        *self
            .severities
            .entry(inc.severity.as_str().to_string())
            .or_default() += 1;
        let name = inc
            .labels
            .get("alertname")
            .cloned()
            .unwrap_or_else(|| inc.title.clone());
        count(&mut self.alertnames, &mut self.other_alertnames, name);
        let service = inc
            .labels
            .get("service")
            .cloned()
            .unwrap_or_else(|| "(no service label)".into());
        count(&mut self.services, &mut self.other_services, service);
        self.newest.insert(
            0,
            format!(
                "{} [{}] {}",
                inc.human_id,
                inc.severity.as_str(),
                crate::text::clip(&inc.title, 60)
            ),
        );
        self.newest.truncate(NEWEST);
    }

    pub fn severities_line(&self) -> String {
        top_line(&self.severities, 0, false)
    }
    pub fn alertnames_line(&self) -> String {
        top_line(&self.alertnames, self.other_alertnames, true)
    }
    pub fn services_line(&self) -> String {
        top_line(&self.services, self.other_services, true)
    }
}

fn count(map: &mut BTreeMap<String, i64>, other: &mut i64, key: String) {
    let key = crate::text::clip(&key, 60).into_owned();
    if let Some(n) = map.get_mut(&key) {
        *n += 1;
    } else if map.len() < TALLY_KEYS {
        map.insert(key, 1);
    } else {
        *other += 1;
    }
}

/// `a 7, b 3, +12 more`: the largest counts first (or in key order).
fn top_line(map: &BTreeMap<String, i64>, other: i64, by_count: bool) -> String {
    let mut entries: Vec<(&String, &i64)> = map.iter().collect();
    if by_count {
        entries.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    }
    let mut parts: Vec<String> = entries
        .iter()
        .take(TOP)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let rest: i64 = entries.iter().skip(TOP).map(|(_, n)| **n).sum::<i64>() + other;
    if rest > 0 {
        parts.push(format!("others {rest}"));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// What the watch remembers between looks.
#[derive(Debug, Default)]
struct Watch {
    /// When each storm's summary was last shown.
    shown: BTreeMap<i64, tokio::time::Instant>,
    /// When a held root was last let go.
    released: Option<tokio::time::Instant>,
}

/// A storm as its summary shows it.
pub struct StormView<'a> {
    pub started: Millis,
    pub ended: Option<Millis>,
    pub held: i64,
    pub threshold: u32,
    pub window_ms: i64,
    pub tally: &'a Tally,
}

/// Storm mode for one store: decides whether a root post is held, and
/// keeps the summaries up to date ([`Storms::watch`]).
pub struct Storms {
    store: Store,
    clock: Arc<dyn Clock>,
    messages: Messages,
    /// More new incidents than this within `window_ms` is a storm; 0 turns
    /// storm mode off.
    threshold: u32,
    window_ms: i64,
}

impl Storms {
    /// Storms of more than `threshold` new incidents within `window`.
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        messages: Messages,
        threshold: u32,
        window: Duration,
    ) -> Storms {
        Storms {
            store,
            clock,
            messages,
            threshold,
            window_ms: window.as_millis() as i64,
        }
    }

    /// Holds outbox item `item` (incident `inc`'s first post, bound for
    /// `channel`) if a storm is under way there, or starts one; `true` when
    /// held. P1 incidents and those a person acted on are never held.
    pub async fn hold(&self, item: i64, channel: &str, inc: &Incident) -> Result<bool, StoreError> {
        if self.threshold == 0 || inc.severity == Severity::P1 {
            return Ok(false);
        }
        let now = self.clock.now();
        let storm = match self.store.open_storm(channel).await? {
            Some(s) => s,
            None if self.storming(now).await? => {
                // The summary is posted through the outbox (once, whatever
                // crashes), showing the storm as it begins.
                let mut first = Tally::default();
                first.add(inc);
                let beginning = Storm {
                    held: 1,
                    started_ms: now.0,
                    ..Storm::default()
                };
                let text = self.summary(&beginning, &first);
                let payload = json!({"channel": channel, "template": "storm", "text": text});
                let s = self.store.start_storm(channel, &payload, now).await?;
                warn!(
                    channel,
                    threshold = self.threshold,
                    window_s = self.window_ms / 1000,
                    "alert storm: more than the threshold of incidents opened within the window; new incidents' roots are held behind one summary"
                );
                s
            }
            None => return Ok(false),
        };
        let mut tally: Tally = serde_json::from_str(&storm.tally).unwrap_or_default();
        tally.add(inc);
        let tally = serde_json::to_string(&tally).unwrap_or_else(|_| "{}".into());
        let held = self.store.hold_post(storm.id, item, &tally, now).await?;
        if held {
            info!(
                incident_id = inc.id,
                storm = storm.id,
                "root post held by the storm"
            );
        }
        Ok(held)
    }

    /// More than the threshold of incidents opened within the window.
    async fn storming(&self, now: Millis) -> Result<bool, StoreError> {
        let opened = self
            .store
            .incidents_opened_since(Millis(now.0 - self.window_ms))
            .await?;
        Ok(opened > i64::from(self.threshold))
    }

    /// Posts and updates the summaries of the storms under way, ends each
    /// once a window has passed below the threshold, and lets held roots
    /// go after it, until `shutdown`.
    pub async fn watch<P: ChatPlatform>(
        self: Arc<Self>,
        platform: Arc<P>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut watch = Watch::default();
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = self.step(platform.as_ref(), &mut watch).await {
                warn!(error = %e, "storm watch: could not bring a storm summary up to date; trying again");
            }
            tokio::select! {
                _ = tokio::time::sleep(WATCH_EVERY) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One look at the storms: end what subsided, show what changed, let
    /// one held root go if it is time.
    async fn step<P: ChatPlatform>(&self, platform: &P, watch: &mut Watch) -> Result<(), String> {
        let now = self.clock.now();
        let mut under_way = false;
        for mut storm in self
            .store
            .storms_to_show()
            .await
            .map_err(|e| e.to_string())?
        {
            let subsided = storm.ended_ms.is_none()
                && (self.threshold == 0
                    || (now.0 - storm.started_ms >= self.window_ms
                        && !self.storming(now).await.map_err(|e| e.to_string())?));
            if subsided {
                self.store
                    .end_storm(storm.id, now)
                    .await
                    .map_err(|e| e.to_string())?;
                info!(
                    storm = storm.id,
                    held = storm.held,
                    "alert storm over; its held roots follow"
                );
                storm.ended_ms = Some(now.0);
                storm.updated_ms = now.0;
                watch.shown.remove(&storm.id);
            } else if storm.message_ref.is_some()
                && (storm.shown_ms >= Some(storm.updated_ms)
                    || watch
                        .shown
                        .get(&storm.id)
                        .is_some_and(|t| t.elapsed() < SHOW_EVERY))
            {
                under_way |= storm.ended_ms.is_none();
                continue;
            }
            under_way |= storm.ended_ms.is_none();
            self.show(platform, &storm).await?;
            if storm.ended_ms.is_none() {
                watch.shown.insert(storm.id, tokio::time::Instant::now());
            }
        }
        if !under_way && watch.released.is_none_or(|t| t.elapsed() >= RELEASE_EVERY) {
            let released = self
                .store
                .release_oldest_held(1, now)
                .await
                .map_err(|e| e.to_string())?;
            if released > 0 {
                watch.released = Some(tokio::time::Instant::now());
            }
        }
        Ok(())
    }

    /// The storm's summary as it stands.
    fn summary(&self, storm: &Storm, tally: &Tally) -> String {
        self.messages.storm(&StormView {
            started: Millis(storm.started_ms),
            ended: storm.ended_ms.map(Millis),
            held: storm.held,
            threshold: self.threshold,
            window_ms: self.window_ms,
            tally,
        })
    }

    /// Updates the storm's summary in place, once the outbox has posted it
    /// (until then there is nothing to update: the post shows the storm as
    /// it began, and the next look catches up).
    async fn show<P: ChatPlatform>(&self, platform: &P, storm: &Storm) -> Result<(), String> {
        let message_ref = match (&storm.message_ref, storm.summary_outbox) {
            (Some(r), _) => r.clone(),
            (None, Some(outbox)) => {
                let posted = self
                    .store
                    .post_for_outbox(outbox)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(posted) = posted else {
                    return Ok(());
                };
                self.store
                    .storm_posted(storm.id, &posted.message_ref)
                    .await
                    .map_err(|e| e.to_string())?;
                posted.message_ref
            }
            (None, None) => return Ok(()),
        };
        let tally: Tally = serde_json::from_str(&storm.tally).unwrap_or_default();
        let text = self.summary(storm, &tally);
        platform
            .update(&message_ref, &text)
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .storm_shown(storm.id, Millis(storm.updated_ms))
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_put_the_largest_counts_first_and_count_the_rest() {
        let mut m = BTreeMap::new();
        for (k, n) in [
            ("a", 1),
            ("b", 9),
            ("c", 3),
            ("d", 3),
            ("e", 2),
            ("f", 2),
            ("g", 1),
        ] {
            m.insert(k.to_string(), n);
        }
        assert_eq!(top_line(&m, 0, true), "b 9, c 3, d 3, e 2, f 2, others 2");
        assert_eq!(top_line(&m, 4, true), "b 9, c 3, d 3, e 2, f 2, others 6");
        assert_eq!(top_line(&BTreeMap::new(), 0, true), "none");
    }

    #[test]
    fn a_tally_names_at_most_a_hundred_keys_and_counts_the_others() {
        let mut map = BTreeMap::new();
        let mut other = 0;
        for i in 0..150 {
            count(&mut map, &mut other, format!("svc-{i}"));
        }
        count(&mut map, &mut other, "svc-1".into());
        assert_eq!(map.len(), 100);
        assert_eq!(other, 50);
        assert_eq!(map["svc-1"], 2);
    }
}
