//! What the escalation model means at an instant: who is on call, who may
//! be paged, when each step of a policy is due and whom it pages. Pure:
//! time comes only from the arguments, so the durable engine (and tests)
//! ask "what happens at step k at time T" and "when is step k+1 due"
//! without a clock of their own.
//!
//! Step numbers `k` count through every round: a policy of 2 steps with
//! `repeat = 1` has steps 0..4 (round 0: steps 0, 1; round 1: 2, 3), and
//! after the last one it is exhausted.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::model::{
    Availability, Contact, Escalation, PageChannel, Policy, Rotation, Step, Target,
};
use crate::domain::Severity;
use crate::domain::time::Millis;

// ---------------------------------------------------------------- rotations

/// Why someone is on call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Their turn in the rotation.
    Turn,
    /// An override (by its index in the rotation's `overrides`).
    Override(usize),
}

/// One person's stretch on call in a rotation, as far as the rotation's
/// turns and overrides tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    /// A contact id.
    pub who: String,
    pub cause: Cause,
    /// When they took over (the hand-off or the override's start); for
    /// someone on call for ever (a rotation of one), as far back as
    /// [`MAX_BOUNDARIES`] hand-offs.
    pub since: Millis,
    /// When someone else takes over; `None` when nobody ever does (one
    /// member and no override ahead).
    pub until: Option<Millis>,
}

/// How far [`Rotation::shift_at`] looks for the next change of person: a
/// rotation whose every member is one person changes never, and this
/// bounds the search.
pub const MAX_BOUNDARIES: usize = 512;

impl Rotation {
    /// Who is on call at `t` and why. The last override in the list that
    /// covers `t` wins; otherwise the turn.
    pub fn who_at(&self, t: Millis) -> (&str, Cause) {
        if let Some((i, o)) = self
            .overrides
            .iter()
            .enumerate()
            .rev()
            .find(|(_, o)| o.from <= t && t < o.to)
        {
            return (o.who.as_str(), Cause::Override(i));
        }
        let (member, _, _) = self.turn_at(t);
        (
            self.members.get(member).map(String::as_str).unwrap_or(""),
            Cause::Turn,
        )
    }

    /// The shift covering `t`: who, since when, until when.
    pub fn shift_at(&self, t: Millis) -> Shift {
        let (who, cause) = self.who_at(t);
        let since = {
            let mut at = t;
            let mut since = t;
            for _ in 0..MAX_BOUNDARIES {
                let b = self.boundary_at_or_before(at);
                since = b;
                // The instant just before the boundary belongs to the
                // shift before it.
                if b.0 == i64::MIN || self.who_at(Millis(b.0 - 1)).0 != who {
                    break;
                }
                at = Millis(b.0 - 1);
            }
            since
        };
        let mut until = None;
        let mut at = t;
        for _ in 0..MAX_BOUNDARIES {
            let b = self.boundary_after(at);
            if self.who_at(b).0 != who {
                until = Some(b);
                break;
            }
            at = b;
        }
        Shift {
            who: who.to_string(),
            cause,
            since,
            until,
        }
    }

    /// The shift after the one covering `t`, if anyone takes over.
    pub fn next_shift(&self, t: Millis) -> Option<Shift> {
        self.shift_at(t).until.map(|u| self.shift_at(u))
    }

    /// The member whose turn covers `t` (an index into `members`), the
    /// hand-off that started it and the next hand-off.
    pub fn turn_at(&self, t: Millis) -> (usize, Millis, Millis) {
        let h = &self.handoff;
        let period = h.period_days();
        let local = t.to_datetime().with_timezone(&h.timezone).date_naive();
        let first = self.first_turn_date();
        for back in -1..=period + 1 {
            let Some(d) = local.checked_sub_signed(chrono::Duration::days(back)) else {
                continue;
            };
            if h.weekday.is_some_and(|w| d.weekday() != w) {
                continue;
            }
            let at = local_instant(h.timezone, d, h.at);
            if at <= t {
                let turn = (d - first).num_days().div_euclid(period);
                let n = self.members.len().max(1) as i64;
                let next = d
                    .checked_add_signed(chrono::Duration::days(period))
                    .map(|n| local_instant(h.timezone, n, h.at))
                    .unwrap_or(Millis(i64::MAX));
                return (turn.rem_euclid(n) as usize, at, next);
            }
        }
        // Unreachable for real zones (a hand-off falls within every
        // period); the first member rather than a panic.
        (0, t, Millis(t.0.saturating_add(period * 86_400_000)))
    }

    /// The date of `members[0]`'s first turn: the first hand-off day on or
    /// after `start`.
    fn first_turn_date(&self) -> NaiveDate {
        let mut d = self.start;
        if let Some(w) = self.handoff.weekday {
            for _ in 0..7 {
                if d.weekday() == w {
                    break;
                }
                d = d.succ_opt().unwrap_or(d);
            }
        }
        d
    }

    /// The first instant after `t` at which the person on call may change.
    fn boundary_after(&self, t: Millis) -> Millis {
        let (_, _, next) = self.turn_at(t);
        self.overrides
            .iter()
            .flat_map(|o| [o.from, o.to])
            .filter(|b| *b > t)
            .fold(next, Millis::min)
    }

    /// The last instant at or before `t` at which the person on call may
    /// have changed.
    fn boundary_at_or_before(&self, t: Millis) -> Millis {
        let (_, start, _) = self.turn_at(t);
        self.overrides
            .iter()
            .flat_map(|o| [o.from, o.to])
            .filter(|b| *b <= t)
            .fold(start, Millis::max)
    }
}

/// `date` at `time` in `tz` as an instant. A time that happens twice
/// (an autumn night) is the first of them; a time that a DST change skips
/// (02:30 on a spring-forward night) is read with the offset in force
/// before the gap, so it lands as far past the gap's end as it was past its
/// start (03:30), as RFC 5545 and JavaScript's Temporal do.
pub fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> Millis {
    let naive = date.and_time(time);
    if let Some(dt) = tz.from_local_datetime(&naive).earliest() {
        return Millis::from_datetime(dt.with_timezone(&Utc));
    }
    for hours in 1..=24 {
        if let Some(before) = tz
            .from_local_datetime(&(naive - chrono::Duration::hours(hours)))
            .earliest()
        {
            let offset = i64::from(before.offset().fix().local_minus_utc());
            let utc = naive - chrono::Duration::seconds(offset);
            return Millis::from_datetime(DateTime::<Utc>::from_naive_utc_and_offset(utc, Utc));
        }
    }
    // No zone has a gap of a day; read as UTC rather than fail.
    Millis::from_datetime(DateTime::<Utc>::from_naive_utc_and_offset(naive, Utc))
}

// ------------------------------------------------------------- availability

/// Why a contact is not paged when a step names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// `business_hours` availability and `t` falls outside every window.
    OutsideBusinessHours {
        /// Their windows, as configured, with their zone.
        hours: String,
        /// Their local time then, e.g. `Sat 03:12 Asia/Tokyo`.
        local: String,
    },
    /// `on_call` availability and they are on call in no rotation at `t`.
    NotOnCall,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::OutsideBusinessHours { hours, local } => {
                write!(f, "outside business hours ({hours}); it is {local} there")
            }
            Unavailable::NotOnCall => {
                f.write_str("not on call in any rotation (availability on_call)")
            }
        }
    }
}

impl Escalation {
    /// Whether `contact` may be paged at `t` when a step names them.
    pub fn availability_at(&self, contact: &Contact, t: Millis) -> Result<(), Unavailable> {
        match contact.availability {
            Availability::Always => Ok(()),
            Availability::BusinessHours => {
                let local = t.to_datetime().with_timezone(&contact.timezone);
                let day = local.weekday().num_days_from_monday() as usize;
                let yesterday = (day + 6) % 7;
                let minute = local.hour() * 60 + local.minute();
                let inside = contact.business_hours.iter().any(|w| {
                    if w.start_min < w.end_min {
                        w.days[day] && (w.start_min..w.end_min).contains(&minute)
                    } else {
                        (w.days[day] && minute >= w.start_min)
                            || (w.days[yesterday] && minute < w.end_min)
                    }
                });
                if inside {
                    Ok(())
                } else {
                    Err(Unavailable::OutsideBusinessHours {
                        hours: format!(
                            "{} {}",
                            contact
                                .business_hours
                                .iter()
                                .map(|w| w.text.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            contact.timezone.name()
                        ),
                        local: local.format("%a %H:%M %Z").to_string(),
                    })
                }
            }
            Availability::OnCall => {
                if self.on_call_anywhere(&contact.id, t) {
                    Ok(())
                } else {
                    Err(Unavailable::NotOnCall)
                }
            }
        }
    }

    /// Whether `contact_id` is on call in some rotation at `t`.
    pub fn on_call_anywhere(&self, contact_id: &str, t: Millis) -> bool {
        self.rotations.values().any(|r| r.who_at(t).0 == contact_id)
    }

    /// The contact a chat user is: by contact id, or by their Slack,
    /// Discord or console id.
    pub fn contact_for_user(&self, user: &str) -> Option<&Contact> {
        self.contacts.get(user).or_else(|| {
            let user = user.trim_start_matches('@');
            self.contacts.values().find(|c| {
                [
                    &c.addresses.slack,
                    &c.addresses.discord,
                    &c.addresses.console,
                ]
                .into_iter()
                .any(|a| a.as_deref() == Some(user))
            })
        })
    }
}

// ------------------------------------------------------------------- plans

/// Step `k` of a policy, placed in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepAt {
    /// Counts through every round: 0 is the first step of the first pass.
    pub k: usize,
    /// 0 for the first pass, 1 for the first repeat…
    pub round: u32,
    /// The step's index in the policy's `steps`.
    pub step: usize,
    /// When it pages.
    pub due: Millis,
    /// When, unacknowledged, the next step (or exhaustion) comes.
    pub deadline: Millis,
}

/// What follows a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Step(StepAt),
    /// Nobody acknowledged through every round: the timeline says so and
    /// the channel is told, at `at`.
    Exhausted {
        at: Millis,
    },
}

/// An incident's whole escalation, had nobody acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub severity: Severity,
    pub steps: Vec<StepAt>,
    pub exhausted_at: Millis,
}

impl Policy {
    /// Steps over every round.
    pub fn len(&self) -> usize {
        self.steps.len() * (self.repeat as usize + 1)
    }

    /// Never true for a validated policy.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    fn round_ms(&self) -> i64 {
        self.steps
            .iter()
            .fold(0i64, |a, s| a.saturating_add(s.ack_within_ms))
    }

    /// When step `k` is due for an escalation started at `start`; with
    /// `k == len()`, when the policy is exhausted. `None` past that.
    fn offset(&self, k: usize) -> Option<i64> {
        let n = self.steps.len();
        if n == 0 || k > self.len() {
            return None;
        }
        let rounds = (k / n) as i64;
        let within = self.steps[..k % n]
            .iter()
            .fold(0i64, |a, s| a.saturating_add(s.ack_within_ms));
        Some(
            self.round_ms()
                .saturating_mul(rounds)
                .saturating_add(within),
        )
    }

    /// Step `k` placed in time for an escalation started at `start`;
    /// `None` when the policy has no step `k`.
    pub fn step_at(&self, start: Millis, k: usize) -> Option<StepAt> {
        let n = self.steps.len();
        if k >= self.len() {
            return None;
        }
        let due = Millis(start.0.saturating_add(self.offset(k)?));
        Some(StepAt {
            k,
            round: (k / n) as u32,
            step: k % n,
            due,
            deadline: Millis(due.0.saturating_add(self.steps[k % n].ack_within_ms)),
        })
    }

    /// What follows step `k` (`None` for a step the policy does not have).
    pub fn next_after(&self, start: Millis, k: usize) -> Option<Next> {
        if k >= self.len() {
            return None;
        }
        Some(match self.step_at(start, k + 1) {
            Some(s) => Next::Step(s),
            None => Next::Exhausted {
                at: self.exhausted_at(start),
            },
        })
    }

    /// When nobody has acknowledged through every round.
    pub fn exhausted_at(&self, start: Millis) -> Millis {
        Millis(start.0.saturating_add(self.offset(self.len()).unwrap_or(0)))
    }

    /// The step in force at `t` (the last one due at or before it), or
    /// `None` before the start and once exhausted: where an engine that
    /// was down resumes, or where a severity change re-plans from.
    pub fn current(&self, start: Millis, t: Millis) -> Option<StepAt> {
        if t < start || t >= self.exhausted_at(start) {
            return None;
        }
        (0..self.len())
            .map_while(|k| self.step_at(start, k))
            .take_while(|s| s.due <= t)
            .last()
    }

    /// Every step in time, had nobody acknowledged.
    pub fn plan(&self, start: Millis) -> Plan {
        Plan {
            severity: self.severity,
            steps: (0..self.len())
                .filter_map(|k| self.step_at(start, k))
                .collect(),
            exhausted_at: self.exhausted_at(start),
        }
    }

    /// The step definition of step `k`.
    pub fn step(&self, k: usize) -> Option<&Step> {
        if k >= self.len() {
            return None;
        }
        self.steps.get(k % self.steps.len())
    }
}

// ------------------------------------------------------- resolving a step

/// Who a page goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A contact, on their channels in order.
    Contact { id: String, via: Vec<PageChannel> },
    /// The assignee, a chat user who is not among the contacts: a mention
    /// in the incident's thread is all firstline knows how to do.
    ChatUser { user: String },
    /// The incident's thread, as an @here-style mention.
    Channel,
}

/// One page a step sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub to: Recipient,
    /// The step's target that led here (`rotation:primary` for its
    /// on-call member), for the timeline.
    pub because: Target,
}

/// A target a step does not page, with the reason for the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub target: Target,
    /// The contact it would have paged, when there was one.
    pub contact: Option<String>,
    pub reason: SkipReason,
}

/// Why a target is not paged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    Unavailable(Unavailable),
    /// `assignee` in a step, and nobody has acknowledged or been assigned.
    NoAssignee,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Unavailable(u) => u.fmt(f),
            SkipReason::NoAssignee => f.write_str("nobody has acknowledged or been assigned yet"),
        }
    }
}

/// What one step does at an instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// In the order of the step's targets; a contact reached through two
    /// targets is paged once, for the first.
    pub pages: Vec<Page>,
    pub skipped: Vec<Skipped>,
}

impl Escalation {
    /// The policy of `severity`, if it pages at all.
    pub fn policy(&self, severity: Severity) -> Option<&Policy> {
        self.policies.get(&severity)
    }

    /// Whom `step` pages at `t`. `assignee` is whoever acknowledged or was
    /// assigned the incident: a contact id or a chat user (matched to a
    /// contact by their chat id when possible).
    pub fn resolve(&self, step: &Step, t: Millis, assignee: Option<&str>) -> Resolved {
        let mut out = Resolved::default();
        let page = |out: &mut Resolved, to: Recipient, because: &Target| {
            if !out.pages.iter().any(|p| p.to == to) {
                out.pages.push(Page {
                    to,
                    because: because.clone(),
                });
            }
        };
        let contact = |c: &Contact| Recipient::Contact {
            id: c.id.clone(),
            via: c.page_via.clone(),
        };
        for target in &step.targets {
            match target {
                Target::Contact(id) => {
                    let Some(c) = self.contacts.get(id) else {
                        continue; // validation rules this out
                    };
                    match self.availability_at(c, t) {
                        Ok(()) => page(&mut out, contact(c), target),
                        Err(u) => out.skipped.push(Skipped {
                            target: target.clone(),
                            contact: Some(id.clone()),
                            reason: SkipReason::Unavailable(u),
                        }),
                    }
                }
                Target::Rotation(name) => {
                    let Some(r) = self.rotations.get(name) else {
                        continue; // validation rules this out
                    };
                    if let Some(c) = self.contacts.get(r.who_at(t).0) {
                        page(&mut out, contact(c), target);
                    }
                }
                Target::Assignee => match assignee {
                    None => out.skipped.push(Skipped {
                        target: target.clone(),
                        contact: None,
                        reason: SkipReason::NoAssignee,
                    }),
                    Some(user) => {
                        let to = match self.contact_for_user(user) {
                            Some(c) => contact(c),
                            None => Recipient::ChatUser {
                                user: user.to_string(),
                            },
                        };
                        page(&mut out, to, target);
                    }
                },
                Target::Channel => page(&mut out, Recipient::Channel, target),
            }
        }
        out
    }

    /// Step `k` of `severity`'s policy for an escalation started at
    /// `start`, resolved at `t`: what the engine does when step `k` comes
    /// due. `None` when that severity pages nobody or has no step `k`.
    pub fn step_due(
        &self,
        severity: Severity,
        start: Millis,
        k: usize,
        t: Millis,
        assignee: Option<&str>,
    ) -> Option<(StepAt, Resolved)> {
        let policy = self.policy(severity)?;
        let at = policy.step_at(start, k)?;
        let step = policy.step(k)?;
        Some((at, self.resolve(step, t, assignee)))
    }
}
