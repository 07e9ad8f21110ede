//! The small values that commands carry: incident references, severities,
//! states, export formats and due dates.
//!
//! They live here rather than in the bot's domain because the grammar has to
//! accept and refuse them with its own words; the bot re-exports `Severity`
//! and `State` so there is one definition of each in the workspace.

use std::fmt;
use std::str::FromStr;

/// Why a single value (an incident ID, a severity, a state, a format or a
/// date) was refused.
///
/// It exists so that `FromStr` on these types says what was wrong in words an
/// on-call engineer can act on; [`crate::parse`] wraps it into a
/// [`crate::ParseError`] that adds the command and its usage line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// Lower-case, no trailing period, names what was given and what was
    /// expected, e.g. `expected a severity P1, P2 or P3, got "P7"`.
    pub message: String,
}

impl ValueError {
    fn new(message: impl Into<String>) -> Self {
        ValueError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValueError {}

/// A reference to an incident by its number, shown as `INC-42`.
///
/// People say and type incident IDs in several ways (`INC-42`, `inc-42`,
/// `42`); this type is the one normalised form, so the rest of the bot never
/// compares strings. Numbers start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncidentRef(pub i64);

impl fmt::Display for IncidentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "INC-{}", self.0)
    }
}

impl FromStr for IncidentRef {
    type Err = ValueError;

    /// Accepts `INC-42`, `inc-42` (any case) and a bare `42`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let digits = match trimmed.get(..4) {
            Some(prefix) if prefix.eq_ignore_ascii_case("inc-") => &trimmed[4..],
            _ => trimmed,
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValueError::new(format!(
                "expected an incident ID like INC-42 or 42, got {s:?}"
            )));
        }
        let number: i64 = digits
            .parse()
            .map_err(|_| ValueError::new(format!("incident ID {s:?} is too large")))?;
        if number == 0 {
            return Err(ValueError::new(format!(
                "incident IDs start at INC-1, got {s:?}"
            )));
        }
        Ok(IncidentRef(number))
    }
}

/// Whether a word was most likely meant as an incident ID.
///
/// Used where an ID is optional and free text may follow: such a word is read
/// as an ID (and refused if malformed, e.g. `INC-x`) rather than silently
/// becoming the first word of a note.
pub(crate) fn looks_like_incident_id(word: &str) -> bool {
    let is_digits = !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit());
    let has_prefix = word
        .get(..4)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("inc-"));
    is_digits || has_prefix
}

/// How urgent an incident is, from seed 003's escalation levels.
///
/// The derived order follows the names, so `P1 < P2 < P3`: sorting ascending
/// puts the most severe incidents first, and `a < b` reads as "a is more
/// severe than b".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Page the tech lead at once; acknowledge within 5 minutes.
    P1,
    /// Escalate via the team lead; acknowledge within 15 minutes.
    P2,
    /// Normal flow; acknowledge within an hour.
    P3,
}

impl Severity {
    /// Every severity, most severe first, for listing choices in help and
    /// error messages.
    pub const ALL: [Severity; 3] = [Severity::P1, Severity::P2, Severity::P3];

    /// The canonical spelling (`"P1"`), used in chat, storage and exports.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::P1 => "P1",
            Severity::P2 => "P2",
            Severity::P3 => "P3",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = ValueError;

    /// Accepts `P1`..`P3` and `sev1`..`sev3`, in any case. Words such as
    /// `critical` are refused on purpose: their meaning is a per-team alert
    /// label mapping, not part of the grammar.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "p1" | "sev1" => Ok(Severity::P1),
            "p2" | "sev2" => Ok(Severity::P2),
            "p3" | "sev3" => Ok(Severity::P3),
            _ => Err(ValueError::new(format!(
                "expected a severity P1, P2 or P3, got {s:?}"
            ))),
        }
    }
}

/// Where an incident is in its life: triggered -> acknowledged -> mitigated
/// -> resolved (and back to triggered on reopen).
///
/// The derived order is that lifecycle order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Opened by an alert or by hand; nobody has said they are on it yet.
    Triggered,
    /// Someone is on it; paging stops.
    Acknowledged,
    /// The impact is over, the cause may not be fixed yet.
    Mitigated,
    /// Done; the postmortem can be written.
    Resolved,
}

impl State {
    /// Every state in lifecycle order, for listing choices in help and error
    /// messages.
    pub const ALL: [State; 4] = [
        State::Triggered,
        State::Acknowledged,
        State::Mitigated,
        State::Resolved,
    ];

    /// The canonical lower-case spelling (`"triggered"`), used in chat,
    /// storage and exports.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Triggered => "triggered",
            State::Acknowledged => "acknowledged",
            State::Mitigated => "mitigated",
            State::Resolved => "resolved",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = ValueError;

    /// Accepts the four state names in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == lower)
            .ok_or_else(|| {
                ValueError::new(format!(
                    "expected a state triggered, acknowledged, mitigated or resolved, got {s:?}"
                ))
            })
    }
}

/// The file format of a postmortem export.
///
/// Markdown is the default because it pastes straight into a wiki or a chat
/// message; JSON is for tooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum ExportFormat {
    /// A document for people (`md`).
    #[default]
    Markdown,
    /// A document for programs (`json`).
    Json,
}

impl ExportFormat {
    /// The short token (`"md"`, `"json"`), the same one the HTTP API's
    /// `?format=` and the command line's `--format` take.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Markdown => "md",
            ExportFormat::Json => "json",
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExportFormat {
    type Err = ValueError;

    /// Accepts `md`, `markdown` and `json`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "md" | "markdown" => Ok(ExportFormat::Markdown),
            "json" => Ok(ExportFormat::Json),
            _ => Err(ValueError::new(format!(
                "expected a format md or json, got {s:?}"
            ))),
        }
    }
}

/// Checks that `s` is a real calendar date written `YYYY-MM-DD`.
///
/// Follow-up due dates are stored as text and shown back to people, so a
/// typo such as `2025-02-30` must be caught while its author is still typing.
pub(crate) fn check_date(s: &str) -> Result<(), ValueError> {
    let shape_error = || {
        ValueError::new(format!(
            "expected a due date as YYYY-MM-DD, e.g. 2025-03-14, got {s:?}"
        ))
    };
    let bytes = s.as_bytes();
    let digits_at = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    if bytes.len() != 10
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !digits_at(0..4)
        || !digits_at(5..7)
        || !digits_at(8..10)
    {
        return Err(shape_error());
    }
    // The shape check above guarantees these are ASCII digits.
    let number = |range: std::ops::Range<usize>| -> u32 {
        bytes[range]
            .iter()
            .fold(0, |acc, b| acc * 10 + u32::from(b - b'0'))
    };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    if !(1..=12).contains(&month) {
        return Err(ValueError::new(format!(
            "{s:?} is not a date: the month must be 01 to 12"
        )));
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=days).contains(&day) {
        return Err(ValueError::new(format!(
            "{s:?} is not a date: that month has {days} days"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_ids_are_normalised_from_every_accepted_spelling() {
        for spelling in ["INC-42", "inc-42", "Inc-42", "42", " 42 ", "INC-0042"] {
            assert_eq!(
                spelling.parse::<IncidentRef>(),
                Ok(IncidentRef(42)),
                "{spelling}"
            );
        }
    }

    #[test]
    fn incident_ids_are_shown_as_inc_dash_number() {
        assert_eq!(IncidentRef(42).to_string(), "INC-42");
        assert_eq!("inc-7".parse::<IncidentRef>().unwrap().to_string(), "INC-7");
    }

    #[test]
    fn malformed_incident_ids_are_refused_with_the_expected_shape() {
        for bad in [
            "INC-", "INC-x", "INC42", "-5", "+5", "4 2", "", "#42", "INC--4",
        ] {
            let err = bad.parse::<IncidentRef>().unwrap_err();
            assert_eq!(
                err.message,
                format!("expected an incident ID like INC-42 or 42, got {bad:?}")
            );
        }
    }

    #[test]
    fn incident_zero_is_refused_because_numbering_starts_at_one() {
        let err = "INC-0".parse::<IncidentRef>().unwrap_err();
        assert_eq!(err.message, "incident IDs start at INC-1, got \"INC-0\"");
    }

    #[test]
    fn an_incident_id_too_large_for_storage_is_refused() {
        let err = "99999999999999999999".parse::<IncidentRef>().unwrap_err();
        assert_eq!(
            err.message,
            "incident ID \"99999999999999999999\" is too large"
        );
    }

    #[test]
    fn severities_accept_p_and_sev_spellings_in_any_case() {
        let cases = [
            ("P1", Severity::P1),
            ("p2", Severity::P2),
            ("sev3", Severity::P3),
            ("SEV1", Severity::P1),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Severity>(), Ok(expected), "{text}");
        }
    }

    #[test]
    fn alert_label_words_are_not_severities() {
        let err = "critical".parse::<Severity>().unwrap_err();
        assert_eq!(
            err.message,
            "expected a severity P1, P2 or P3, got \"critical\""
        );
        assert!("P4".parse::<Severity>().is_err());
        assert!("sev 1".parse::<Severity>().is_err());
    }

    #[test]
    fn severities_print_and_sort_most_severe_first() {
        assert_eq!(Severity::P1.to_string(), "P1");
        assert_eq!(Severity::P3.as_str(), "P3");
        let mut list = vec![Severity::P3, Severity::P1, Severity::P2];
        list.sort();
        assert_eq!(list, Severity::ALL);
        assert!(Severity::P1 < Severity::P2);
    }

    #[test]
    fn states_round_trip_through_their_lower_case_names() {
        for state in State::ALL {
            assert_eq!(state.to_string().parse::<State>(), Ok(state));
            assert_eq!(state.as_str(), state.to_string());
        }
        assert_eq!("MITIGATED".parse::<State>(), Ok(State::Mitigated));
        assert_eq!(State::Acknowledged.as_str(), "acknowledged");
    }

    #[test]
    fn an_unknown_state_lists_the_four_real_ones() {
        let err = "acked".parse::<State>().unwrap_err();
        assert_eq!(
            err.message,
            "expected a state triggered, acknowledged, mitigated or resolved, got \"acked\""
        );
    }

    #[test]
    fn export_formats_default_to_markdown_and_accept_both_spellings() {
        assert_eq!(ExportFormat::default(), ExportFormat::Markdown);
        assert_eq!("MD".parse::<ExportFormat>(), Ok(ExportFormat::Markdown));
        assert_eq!(
            "markdown".parse::<ExportFormat>(),
            Ok(ExportFormat::Markdown)
        );
        assert_eq!("json".parse::<ExportFormat>(), Ok(ExportFormat::Json));
        assert_eq!(ExportFormat::Json.to_string(), "json");
        let err = "pdf".parse::<ExportFormat>().unwrap_err();
        assert_eq!(err.message, "expected a format md or json, got \"pdf\"");
    }

    #[test]
    fn real_dates_pass_including_leap_days() {
        for date in ["2025-03-14", "2024-02-29", "2000-02-29", "2025-12-31"] {
            assert_eq!(check_date(date), Ok(()), "{date}");
        }
    }

    #[test]
    fn impossible_dates_name_what_is_wrong() {
        assert_eq!(
            check_date("2025-02-29").unwrap_err().message,
            "\"2025-02-29\" is not a date: that month has 28 days"
        );
        assert_eq!(
            check_date("1900-02-29").unwrap_err().message,
            "\"1900-02-29\" is not a date: that month has 28 days"
        );
        assert_eq!(
            check_date("2025-13-01").unwrap_err().message,
            "\"2025-13-01\" is not a date: the month must be 01 to 12"
        );
        assert_eq!(
            check_date("2025-04-31").unwrap_err().message,
            "\"2025-04-31\" is not a date: that month has 30 days"
        );
        assert!(check_date("2025-04-00").is_err());
    }

    #[test]
    fn dates_in_other_shapes_are_refused_with_an_example() {
        for bad in [
            "tomorrow",
            "14/03/2025",
            "2025-3-14",
            "2025-03-14T00:00",
            "２０２５-03-14",
        ] {
            assert_eq!(
                check_date(bad).unwrap_err().message,
                format!("expected a due date as YYYY-MM-DD, e.g. 2025-03-14, got {bad:?}")
            );
        }
    }
}
