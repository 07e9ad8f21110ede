//! The escalation model as the rest of firstline uses it: contacts,
//! rotations and one policy per severity, each already checked (see
//! `config::escalation`, which builds an [`Escalation`] from the
//! configuration and names every mistake). Everything here is plain data
//! plus the parsers of its small languages (`"5m"`, `"Mon-Fri 09:00-18:00"`,
//! `"weekly Mon 10:00 Asia/Tokyo"`); what it means at an instant is in
//! [`super::policy`].

use std::collections::BTreeMap;
use std::fmt;

use chrono::{NaiveTime, Timelike, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::domain::Severity;
use crate::domain::time::Millis;

/// Contacts, rotations and policies, validated: every name a policy or a
/// rotation uses exists, every zone is a zone, every range parses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Escalation {
    /// By their key in the configuration (`[contacts.tech_lead]` is
    /// `tech_lead`), which is how steps and rotations name them.
    pub contacts: BTreeMap<String, Contact>,
    /// By name (`[rotations.primary]` is `primary`, targeted as
    /// `rotation:primary`).
    pub rotations: BTreeMap<String, Rotation>,
    /// One per severity that pages; a severity without one pages nobody.
    pub policies: BTreeMap<Severity, Policy>,
}

/// A person who can be paged.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    /// The configuration key (`tech_lead`): stable, used in steps,
    /// rotations and on the timeline.
    pub id: String,
    /// How people call them (`テックリード`); the key when not set.
    pub name: String,
    /// Their zone: business hours are read in it.
    pub timezone: Tz,
    pub availability: Availability,
    /// When `availability` is [`Availability::BusinessHours`]: the weekly
    /// windows, in `timezone`, in which they may be paged. Empty otherwise.
    pub business_hours: Vec<WeeklyWindow>,
    /// Where to reach them; which of these are needed follows from
    /// `page_via`.
    pub addresses: Addresses,
    /// The channels to page them on, in order: a page that fails on one
    /// goes out on the next. Never empty.
    pub page_via: Vec<PageChannel>,
}

/// Where a contact can be reached. Each is optional; validation makes sure
/// every channel in `page_via` has the address it needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    /// Slack member id (`U0…`).
    pub slack: Option<String>,
    /// Discord user id (a snowflake).
    pub discord: Option<String>,
    /// The name they type under on the console platform.
    pub console: Option<String>,
    pub email: Option<String>,
    /// A phone number for SMS and calls, `+` and digits (spaces and dashes
    /// allowed).
    pub phone: Option<String>,
}

/// When a contact may be paged when a step names them directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Availability {
    /// Any time.
    #[serde(rename = "24/7")]
    Always,
    /// Only inside their `business_hours`, read in their own zone.
    #[serde(rename = "business_hours")]
    BusinessHours,
    /// Only while on call in some rotation (scheduled or by override).
    #[serde(rename = "on_call")]
    OnCall,
}

impl Availability {
    /// The spelling used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Always => "24/7",
            Availability::BusinessHours => "business_hours",
            Availability::OnCall => "on_call",
        }
    }
}

/// A way to page someone. Chat channels go through the `ChatPlatform`
/// seam; the others through the pagers in `[pagers.*]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageChannel {
    /// A direct message on the configured chat platform.
    ChatDm,
    /// A mention of them in the incident's thread.
    ChatMention,
    /// Mail through `[pagers.email]`.
    Email,
    /// A text message through `[pagers.phone]`.
    PhoneSms,
    /// A voice call through `[pagers.phone]`.
    PhoneCall,
    /// An event through `[pagers.pagerduty]` (its routing key decides who).
    Pagerduty,
    /// A signed POST through `[pagers.webhook]`.
    Webhook,
}

impl PageChannel {
    /// The spelling used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            PageChannel::ChatDm => "chat_dm",
            PageChannel::ChatMention => "chat_mention",
            PageChannel::Email => "email",
            PageChannel::PhoneSms => "phone_sms",
            PageChannel::PhoneCall => "phone_call",
            PageChannel::Pagerduty => "pagerduty",
            PageChannel::Webhook => "webhook",
        }
    }
}

/// A set of people who take turns, handing over at fixed local times.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    pub name: String,
    /// Contact ids, in turn order; never empty.
    pub members: Vec<String>,
    pub handoff: Handoff,
    /// The local date from which `members[0]` holds the first shift (the
    /// first hand-off on or after it); turns before it follow the same
    /// order backwards. See [`Rotation::DEFAULT_START`].
    pub start: chrono::NaiveDate,
    /// Someone standing in over a span of time, whatever the turn says.
    pub overrides: Vec<Override>,
}

impl Rotation {
    /// The first day of turns when `start` is not configured: any fixed
    /// date keeps the order stable across restarts; this one is a Monday.
    pub const DEFAULT_START: chrono::NaiveDate = match chrono::NaiveDate::from_ymd_opt(1970, 1, 5) {
        Some(d) => d,
        None => chrono::NaiveDate::MIN,
    };
}

/// When a rotation hands over: `daily 09:00 Europe/Paris` or
/// `weekly Mon 10:00 Asia/Tokyo` (wall-clock time in the zone, so across a
/// DST change the hand-off stays at 09:00 local).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// `None` for daily, the day for weekly.
    pub weekday: Option<Weekday>,
    pub at: NaiveTime,
    pub timezone: Tz,
}

impl Handoff {
    /// Days between hand-offs.
    pub fn period_days(&self) -> i64 {
        if self.weekday.is_some() { 7 } else { 1 }
    }

    /// Parses `daily HH:MM [ZONE]` or `weekly DAY HH:MM [ZONE]`; without a
    /// zone, `default_zone` (the server's).
    pub fn parse(text: &str, default_zone: Tz) -> Result<Handoff, String> {
        const FORM: &str = "a hand-off is \"daily HH:MM [ZONE]\" or \"weekly DAY HH:MM [ZONE]\", e.g. \"weekly Mon 10:00 Asia/Tokyo\"";
        let words: Vec<&str> = text.split_whitespace().collect();
        let (weekday, rest) = match words.as_slice() {
            ["daily", rest @ ..] => (None, rest),
            ["weekly", day, rest @ ..] => (
                Some(
                    parse_weekday(day)
                        .ok_or_else(|| format!("{day:?} is not a day like Mon; {FORM}"))?,
                ),
                rest,
            ),
            _ => return Err(format!("{text:?}: {FORM}")),
        };
        let (time, zone) = match rest {
            [time] => (time, None),
            [time, zone] => (time, Some(zone)),
            _ => return Err(format!("{text:?}: {FORM}")),
        };
        let at = parse_clock(time, false).map_err(|e| format!("{e}; {FORM}"))?;
        let timezone = match zone {
            None => default_zone,
            Some(z) => z
                .parse::<Tz>()
                .map_err(|_| format!("{z:?} is not an IANA time zone such as Asia/Tokyo"))?,
        };
        Ok(Handoff {
            weekday,
            at,
            timezone,
        })
    }
}

impl fmt::Display for Handoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.weekday {
            Some(d) => write!(f, "weekly {d} ")?,
            None => f.write_str("daily ")?,
        }
        write!(f, "{} {}", self.at.format("%H:%M"), self.timezone.name())
    }
}

/// Someone on call over `[from, to)`, instead of the rotation's turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// A contact id.
    pub who: String,
    pub from: Millis,
    /// After `from`.
    pub to: Millis,
}

/// A weekly window of local time, `Mon-Fri 09:00-18:00`. An end before
/// the start runs past midnight into the next day (`Mon-Fri 22:00-06:00`
/// starts on those days); `24:00` is the end of the day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklyWindow {
    /// The days the window starts on, Monday first.
    pub days: [bool; 7],
    /// Minutes after local midnight.
    pub start_min: u32,
    /// Minutes after local midnight, up to 1440; before `start_min` when
    /// the window runs past midnight.
    pub end_min: u32,
    /// As written, for messages.
    pub text: String,
}

impl WeeklyWindow {
    /// Parses `DAYS HH:MM-HH:MM`, where DAYS is a day (`Sat`), a range
    /// (`Mon-Fri`, `Fri-Mon`), a list of those (`Mon,Wed,Fri-Sun`), or
    /// `daily`.
    pub fn parse(text: &str) -> Result<WeeklyWindow, String> {
        const FORM: &str =
            "a business-hours range is \"DAYS HH:MM-HH:MM\", e.g. \"Mon-Fri 09:00-18:00\"";
        let mut words = text.split_whitespace();
        let (Some(days_text), Some(times), None) = (words.next(), words.next(), words.next())
        else {
            return Err(format!("{text:?}: {FORM}"));
        };
        let mut days = [false; 7];
        if days_text.eq_ignore_ascii_case("daily") {
            days = [true; 7];
        } else {
            for part in days_text.split(',') {
                let (a, b) = part.split_once('-').unwrap_or((part, part));
                let (Some(a), Some(b)) = (parse_weekday(a), parse_weekday(b)) else {
                    return Err(format!(
                        "{part:?} is not a day or a range like Mon-Fri; {FORM}"
                    ));
                };
                let (a, b) = (a.num_days_from_monday(), b.num_days_from_monday());
                let mut d = a;
                loop {
                    days[d as usize] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
        }
        let Some((from, to)) = times.split_once('-') else {
            return Err(format!(
                "{times:?} is not a time range like 09:00-18:00; {FORM}"
            ));
        };
        let bad =
            |e: String| format!("{times:?} is not a time range like 09:00-18:00 ({e}); {FORM}");
        let start = parse_clock(from, false).map_err(bad)?;
        let end = parse_clock(to, true).map_err(bad)?;
        let start_min = start.hour() * 60 + start.minute();
        let end_min = if to.trim() == "24:00" {
            1440
        } else {
            end.hour() * 60 + end.minute()
        };
        if start_min == end_min || (start_min == 0 && end_min == 0) {
            return Err(format!(
                "{times:?} starts and ends at the same time; for all day write 00:00-24:00"
            ));
        }
        Ok(WeeklyWindow {
            days,
            start_min,
            end_min,
            text: text.split_whitespace().collect::<Vec<_>>().join(" "),
        })
    }
}

/// What a severity's incidents page, step by step.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub severity: Severity,
    /// Never empty.
    pub steps: Vec<Step>,
    /// How many more times the whole list of steps runs after the first
    /// pass when nobody acknowledges (0: once through).
    pub repeat: u32,
}

/// One step: whom to page, and how long to wait for an acknowledgement
/// before the next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Never empty.
    pub targets: Vec<Target>,
    /// Milliseconds, above 0.
    pub ack_within_ms: i64,
}

/// What a step pages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A contact by id; skipped when not available.
    Contact(String),
    /// Whoever is on call in the rotation (`rotation:NAME`); paged
    /// whatever their own availability says, since being on call is the
    /// promise to answer.
    Rotation(String),
    /// Whoever acknowledged or was assigned the incident (`assignee`).
    Assignee,
    /// The incident's thread, as an @here-style mention (`channel`).
    Channel,
}

impl Target {
    /// Reads a step's target as written; `is_contact` and `is_rotation`
    /// say which names exist.
    pub fn parse(text: &str) -> Target {
        match text {
            "assignee" => Target::Assignee,
            "channel" => Target::Channel,
            _ => match text.strip_prefix("rotation:") {
                Some(name) => Target::Rotation(name.to_string()),
                None => Target::Contact(text.to_string()),
            },
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Contact(id) => f.write_str(id),
            Target::Rotation(name) => write!(f, "rotation:{name}"),
            Target::Assignee => f.write_str("assignee"),
            Target::Channel => f.write_str("channel"),
        }
    }
}

/// How long a step of `severity` waits for an acknowledgement when its
/// `ack_within` is not written: seed 003's response times (P1 5 minutes,
/// P2 15 minutes, P3 an hour).
pub fn default_ack_within_ms(severity: Severity) -> i64 {
    match severity {
        Severity::P1 => 5 * 60_000,
        Severity::P2 => 15 * 60_000,
        Severity::P3 => 60 * 60_000,
    }
}

/// Parses a duration as `5m`, `15m`, `1h`, `90s`, `1h30m` or `1d`: numbers
/// each followed by a unit (s, m, h, d), summed. Returns milliseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    const FORM: &str =
        "a duration is a number with a unit, e.g. \"5m\", \"1h\", \"90s\", \"1h30m\"";
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("is empty; {FORM}"));
    }
    let mut total: i64 = 0;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit_ms: i64 = match c {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return Err(format!("{text:?} is not a duration; {FORM}")),
        };
        let n: i64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration; {FORM}"))?;
        number.clear();
        total = n
            .checked_mul(unit_ms)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| format!("{text:?} is too long"))?;
    }
    if !number.is_empty() {
        return Err(format!("{text:?} has a number without a unit; {FORM}"));
    }
    Ok(total)
}

/// `Mon`, `monday`, `MON`.
fn parse_weekday(text: &str) -> Option<Weekday> {
    let t = text.trim();
    if t.len() < 3 {
        return None;
    }
    t.parse::<Weekday>().ok()
}

/// `HH:MM`; `24:00` only where `end_of_day` allows it (as midnight).
fn parse_clock(text: &str, end_of_day: bool) -> Result<NaiveTime, String> {
    let t = text.trim();
    if end_of_day && t == "24:00" {
        return Ok(NaiveTime::MIN);
    }
    let ok = t.len() == 5 && t.as_bytes()[2] == b':';
    NaiveTime::parse_from_str(t, "%H:%M")
        .ok()
        .filter(|_| ok)
        .ok_or_else(|| format!("{t:?} is not a time like 09:00"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("5m"), Ok(300_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("90s"), Ok(90_000));
        for bad in ["5", "five minutes", "", "m", "5 m", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn business_hours_take_ranges_lists_and_overnight_windows() {
        let w = WeeklyWindow::parse("Mon-Fri 09:00-18:00").expect("valid");
        assert_eq!(w.days, [true, true, true, true, true, false, false]);
        assert_eq!((w.start_min, w.end_min), (540, 1080));
        let w = WeeklyWindow::parse("Fri-Mon,Wed 22:00-06:00").expect("valid");
        assert_eq!(w.days, [true, false, true, false, true, true, true]);
        assert_eq!((w.start_min, w.end_min), (1320, 360));
        let w = WeeklyWindow::parse("daily 00:00-24:00").expect("valid");
        assert_eq!((w.start_min, w.end_min), (0, 1440));
        for bad in [
            "Mon-Fri",
            "Mon-Fri 9-18",
            "Mon-Fry 09:00-18:00",
            "Mon-Fri 09:00-09:00",
            "Mon-Fri 09:00-25:00",
            "M 09:00-18:00",
        ] {
            assert!(WeeklyWindow::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn handoffs_are_daily_or_weekly_with_an_optional_zone() {
        let h = Handoff::parse("weekly Mon 10:00 Asia/Tokyo", Tz::UTC).expect("valid");
        assert_eq!(h.weekday, Some(Weekday::Mon));
        assert_eq!(h.timezone, chrono_tz::Asia::Tokyo);
        assert_eq!(h.to_string(), "weekly Mon 10:00 Asia/Tokyo");
        let h = Handoff::parse("daily 09:00", chrono_tz::Europe::Paris).expect("valid");
        assert_eq!((h.weekday, h.timezone), (None, chrono_tz::Europe::Paris));
        for bad in [
            "weekly 10:00",
            "monthly 1 10:00",
            "daily 9am",
            "weekly Mon 10:00 Mars/Base",
            "daily 09:00 UTC extra",
        ] {
            assert!(Handoff::parse(bad, Tz::UTC).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn targets_read_as_written() {
        assert_eq!(Target::parse("assignee"), Target::Assignee);
        assert_eq!(Target::parse("channel"), Target::Channel);
        assert_eq!(
            Target::parse("rotation:primary"),
            Target::Rotation("primary".into())
        );
        assert_eq!(
            Target::parse("tech_lead"),
            Target::Contact("tech_lead".into())
        );
    }
}
