//! How alert arrivals reach an incident's timeline without drowning it.
//!
//! A storm of 400,000 alerts in one group used to write 400,000 timeline
//! events, and every view of the incident (API, chat, postmortem) tried to
//! show them all. Now each incident records its first
//! [`INDIVIDUAL_EVENTS`] alerts firing (joining or firing again) and its
//! first [`INDIVIDUAL_EVENTS`] resolving one event each, as before; beyond
//! those, arrivals are counted and written as one aggregate event ("N more
//! alerts joined, M resolved") at most once every [`AGGREGATE_EVERY_MS`],
//! and once more when the incident has been quiet for a few seconds (the
//! writer flushes when idle). Every alert itself is still stored, and the
//! alerts API lists them all.
//!
//! The counts live in the incident writer's memory, copied per batch and
//! kept only when the batch commits. A restart forgets them: the incident
//! may get another [`INDIVIDUAL_EVENTS`] individual events, and at most one
//! aggregate's worth of arrivals (those of the last minute before a crash)
//! goes uncounted on the timeline (never in the alerts table). Pure: no IO.

use std::collections::HashMap;

use crate::domain::time::Millis;

/// Alerts firing, and alerts resolving, recorded one event each per
/// incident before they are counted instead.
pub const INDIVIDUAL_EVENTS: u32 = 20;
/// Least time between two aggregate events of one incident.
pub const AGGREGATE_EVERY_MS: i64 = 60_000;
/// Entries untouched this long are forgotten (the incident is long quiet).
const FORGET_AFTER_MS: i64 = 24 * 3_600_000;

/// Which way an alert moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    Firing,
    Resolved,
}

/// What to write for one arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The alert's own event, as before.
    Individual,
    /// Nothing now: it is counted.
    Counted,
    /// Counted, and an aggregate event is due now.
    Aggregate(Aggregate),
}

/// An aggregate event's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Aggregate {
    pub incident_id: i64,
    /// Alerts that fired (joined or fired again) since the last aggregate.
    pub fired: u64,
    /// Alerts that resolved since the last aggregate.
    pub resolved: u64,
    /// When the first of them arrived.
    pub since: Millis,
}

impl Aggregate {
    /// The timeline text.
    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        if self.fired > 0 {
            parts.push(format!(
                "{} more alert(s) fired (joined or fired again)",
                self.fired
            ));
        }
        if self.resolved > 0 {
            parts.push(format!("{} more alert(s) resolved", self.resolved));
        }
        format!(
            "{} — counted, not listed one by one; GET /api/incidents/INC-{}/alerts lists every alert",
            parts.join(", "),
            self.incident_id
        )
    }
}

#[derive(Debug, Clone, Default)]
struct Entry {
    fired_events: u32,
    resolved_events: u32,
    pending: Aggregate,
    last_aggregate: Option<Millis>,
    touched: Millis,
}

/// The counts of every incident the writer has seen alerts for.
#[derive(Debug, Clone, Default)]
pub struct Joins {
    by_incident: HashMap<i64, Entry>,
}

impl Joins {
    /// Decides what one arrival on incident `id` at `now` writes.
    pub fn arrive(&mut self, id: i64, arrival: Arrival, now: Millis) -> Record {
        let e = self.by_incident.entry(id).or_default();
        e.touched = now;
        let individual = match arrival {
            Arrival::Firing => &mut e.fired_events,
            Arrival::Resolved => &mut e.resolved_events,
        };
        if *individual < INDIVIDUAL_EVENTS {
            *individual += 1;
            return Record::Individual;
        }
        if e.pending.fired == 0 && e.pending.resolved == 0 {
            e.pending.since = now;
            e.pending.incident_id = id;
        }
        match arrival {
            Arrival::Firing => e.pending.fired += 1,
            Arrival::Resolved => e.pending.resolved += 1,
        }
        // The first count starts the clock: an aggregate comes a minute
        // later (or when the incident goes quiet), not at once for one.
        let last = *e.last_aggregate.get_or_insert(now);
        if now.0 - last.0 >= AGGREGATE_EVERY_MS {
            e.last_aggregate = Some(now);
            return Record::Aggregate(std::mem::take(&mut e.pending));
        }
        Record::Counted
    }

    /// The aggregates of every incident with counts not yet written (and
    /// their counts reset), for when the writer is idle; forgets incidents
    /// quiet for a day.
    pub fn flush(&mut self, now: Millis) -> Vec<Aggregate> {
        self.by_incident.retain(|_, e| {
            now.0 - e.touched.0 < FORGET_AFTER_MS || e.pending.fired + e.pending.resolved > 0
        });
        let mut out = Vec::new();
        for e in self.by_incident.values_mut() {
            if e.pending.fired + e.pending.resolved > 0 {
                e.last_aggregate = Some(now);
                out.push(std::mem::take(&mut e.pending));
            }
        }
        out.sort_by_key(|a| a.incident_id);
        out
    }

    /// Whether any counts wait to be written.
    pub fn has_pending(&self) -> bool {
        self.by_incident
            .values()
            .any(|e| e.pending.fired + e.pending.resolved > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_twenty_are_individual_then_counted_and_written_once_a_minute() {
        let mut joins = Joins::default();
        let at = |s: i64| Millis(1_000_000 + s * 1000);

        let first: Vec<Record> = (0..20)
            .map(|_| joins.arrive(1, Arrival::Firing, at(0)))
            .collect();
        let counted = joins.arrive(1, Arrival::Firing, at(1));
        let more: Vec<Record> = (0..99)
            .map(|i| joins.arrive(1, Arrival::Firing, at(2 + i / 10)))
            .collect();
        let resolved_individually = joins.arrive(1, Arrival::Resolved, at(30));
        let due = joins.arrive(1, Arrival::Firing, at(61));

        assert!(first.iter().all(|r| *r == Record::Individual));
        assert_eq!(counted, Record::Counted);
        assert!(more.iter().all(|r| *r == Record::Counted));
        assert_eq!(resolved_individually, Record::Individual);
        assert_eq!(
            due,
            Record::Aggregate(Aggregate {
                incident_id: 1,
                fired: 101,
                resolved: 0,
                since: at(1)
            })
        );
        assert!(!joins.has_pending());
    }

    #[test]
    fn an_idle_flush_writes_what_was_counted_and_nothing_twice() {
        let mut joins = Joins::default();
        for _ in 0..25 {
            joins.arrive(7, Arrival::Firing, Millis(0));
        }
        for _ in 0..3 {
            joins.arrive(8, Arrival::Firing, Millis(0));
        }

        let flushed = joins.flush(Millis(5_000));
        let again = joins.flush(Millis(6_000));

        assert_eq!(flushed.len(), 1);
        assert_eq!((flushed[0].incident_id, flushed[0].fired), (7, 5));
        assert!(flushed[0].text().contains("5 more alert(s) fired"));
        assert!(again.is_empty());
        assert_eq!(
            joins.arrive(7, Arrival::Firing, Millis(7_000)),
            Record::Counted
        );
    }
}
