//! `/incident ...`: the subcommands people use to run an incident.

use crate::error::ParseError;
use crate::lex::{Args, Flag};
use crate::value::{ExportFormat, IncidentRef, Severity, State, check_date};

/// A parsed `/incident` subcommand.
///
/// `id: None` means "the incident of the thread or channel this was typed
/// in"; the platform fills it in (see [`crate::Command::with_incident`]) or
/// asks which incident was meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentCmd {
    /// `/incident declare <title...> [--sev P1|P2|P3]`: open an incident by
    /// hand.
    Declare {
        /// What is broken, in the declarer's words; becomes the incident's
        /// title and channel topic.
        title: String,
        /// `None` leaves the choice to the bot's configured default.
        severity: Option<Severity>,
    },
    /// `/incident ack [ID]`: acknowledge an incident: you are on it, paging
    /// stops.
    Ack {
        /// The incident, or `None` for the thread's.
        id: Option<IncidentRef>,
    },
    /// `/incident resolve [ID] [note...]`: mark an incident resolved, with an
    /// optional closing note.
    Resolve {
        /// The incident, or `None` for the thread's.
        id: Option<IncidentRef>,
        /// Goes on the timeline next to the resolution.
        note: Option<String>,
    },
    /// `/incident reopen [ID]`: reopen a resolved incident.
    Reopen {
        /// The incident, or `None` for the thread's.
        id: Option<IncidentRef>,
    },
    /// `/incident sev [ID] P1|P2|P3`: change an incident's severity.
    Sev {
        /// The incident, or `None` for the thread's.
        id: Option<IncidentRef>,
        /// The new severity; paging is re-planned from it.
        severity: Severity,
    },
    /// `/incident status [ID] [triggered|acknowledged|mitigated|resolved]`:
    /// show an incident's status, or set it.
    Status {
        /// The incident, or `None` for the thread's.
        id: Option<IncidentRef>,
        /// `None` only shows the status; `Some` moves the incident there.
        set: Option<State>,
    },
    /// `/incident note [ID] <text...>`: add a note to an incident's timeline.
    Note {
        /// The incident, or `None` for the thread's.
        id: Option<IncidentRef>,
        /// The note as typed, spacing and line breaks kept.
        text: String,
    },
    /// `/incident timeline [ID]`: show what happened during an incident, in
    /// order.
    Timeline {
        /// The incident, or `None` for the thread's.
        id: Option<IncidentRef>,
    },
    /// `/incident postmortem [ID] [md|json]`: export a postmortem draft,
    /// Markdown unless json is asked for.
    Postmortem {
        /// The incident, or `None` for the thread's.
        id: Option<IncidentRef>,
        /// Markdown when not given.
        format: ExportFormat,
    },
    /// `/incident followup [ID] <text...> [--owner @who] [--due YYYY-MM-DD]`:
    /// record a follow-up task for after the incident.
    Followup {
        /// The incident, or `None` for the thread's.
        id: Option<IncidentRef>,
        /// What has to be done.
        text: String,
        /// Who does it, as typed (`@ann`, or a platform mention such as
        /// `<@U123>`); the platform resolves it.
        owner: Option<String>,
        /// A real calendar date written `YYYY-MM-DD`, checked here.
        due: Option<String>,
    },
    /// `/incident list [open|all]`: list open incidents, or all of them.
    List {
        /// `false` (the default, `open`) hides resolved incidents.
        all: bool,
    },
}

const SEV: Flag = Flag {
    name: "sev",
    aliases: &["severity"],
    example: "P1",
};
const OWNER: Flag = Flag {
    name: "owner",
    aliases: &[],
    example: "@ann",
};
const DUE: Flag = Flag {
    name: "due",
    aliases: &[],
    example: "2025-03-14",
};

/// Parses the words after `/incident <sub>`; `sub` is lower-case and known
/// to the help table.
pub(crate) fn parse(sub: &str, mut args: Args<'_>) -> Result<IncidentCmd, ParseError> {
    let cmd = match sub {
        "declare" => {
            let [severity] = args.flags([&SEV])?;
            let severity = severity.map(|s| args.value(&s)).transpose()?;
            let title = args.text().ok_or_else(|| {
                args.error(
                    "missing the incident title, e.g. /incident declare checkout is down --sev P1",
                )
            })?;
            IncidentCmd::Declare { title, severity }
        }
        "ack" => IncidentCmd::Ack {
            id: args.only_id()?,
        },
        "resolve" => IncidentCmd::Resolve {
            id: args.optional_id()?,
            note: args.text(),
        },
        "reopen" => IncidentCmd::Reopen {
            id: args.only_id()?,
        },
        "sev" => {
            // A bare 1, 2 or 3 reads as an incident ID; say so if that left
            // the severity missing, since "sev 1" usually means P1.
            let bare = args
                .peek()
                .filter(|t| !t.quoted && matches!(t.text.as_str(), "1" | "2" | "3"))
                .map(|t| t.text.clone());
            let id = args.optional_id()?;
            let Some(token) = args.next() else {
                let hint = bare.map_or(String::new(), |n| {
                    format!(
                        " (a bare {n} is read as incident INC-{n}; for the severity write P{n})"
                    )
                });
                return Err(
                    args.error(format!("missing the severity: expected P1, P2 or P3{hint}"))
                );
            };
            let severity = args.value(&token.text)?;
            args.finish()?;
            IncidentCmd::Sev { id, severity }
        }
        "status" => {
            let id = args.optional_id()?;
            let set = args.optional_value()?;
            args.finish()?;
            IncidentCmd::Status { id, set }
        }
        "note" => {
            let id = args.optional_id()?;
            let text = args
                .text()
                .ok_or_else(|| args.error("missing the note text"))?;
            IncidentCmd::Note { id, text }
        }
        "timeline" => IncidentCmd::Timeline {
            id: args.only_id()?,
        },
        "postmortem" => {
            let id = args.optional_id()?;
            let format = args.optional_value()?.unwrap_or_default();
            args.finish()?;
            IncidentCmd::Postmortem { id, format }
        }
        "followup" => {
            let [owner, due] = args.flags([&OWNER, &DUE])?;
            if let Some(due) = &due {
                check_date(due).map_err(|e| args.error(e.message))?;
            }
            let id = args.optional_id()?;
            let text = args
                .text()
                .ok_or_else(|| args.error("missing the follow-up text: what has to be done?"))?;
            IncidentCmd::Followup {
                id,
                text,
                owner,
                due,
            }
        }
        "list" => {
            let all = match args.next() {
                None => false,
                Some(token) => match token.text.to_ascii_lowercase().as_str() {
                    "open" => false,
                    "all" => true,
                    _ => {
                        return Err(
                            args.error(format!("expected open or all, got {:?}", token.text))
                        );
                    }
                },
            };
            args.finish()?;
            IncidentCmd::List { all }
        }
        other => return Err(crate::unknown_subcommand("incident", other)),
    };
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use crate::{
        Command, ExportFormat, IncidentCmd, IncidentRef, ParseError, Severity, State, parse,
    };

    fn incident(input: &str) -> IncidentCmd {
        match parse(input) {
            Ok(Command::Incident(cmd)) => cmd,
            other => panic!("{input:?} parsed as {other:?}"),
        }
    }

    fn error(input: &str) -> ParseError {
        match parse(input) {
            Err(err) => err,
            Ok(cmd) => panic!("{input:?} parsed as {cmd:?}"),
        }
    }

    const INC_42: Option<IncidentRef> = Some(IncidentRef(42));

    // declare

    #[test]
    fn declare_takes_the_rest_of_the_line_as_the_title() {
        assert_eq!(
            incident("/incident declare checkout is down"),
            IncidentCmd::Declare {
                title: "checkout is down".into(),
                severity: None
            }
        );
    }

    #[test]
    fn declare_reads_the_severity_option_wherever_it_is_written() {
        let expected = IncidentCmd::Declare {
            title: "checkout is down".into(),
            severity: Some(Severity::P1),
        };
        assert_eq!(
            incident("/incident declare checkout is down --sev P1"),
            expected
        );
        assert_eq!(
            incident("/incident declare --sev p1 checkout is down"),
            expected
        );
        assert_eq!(
            incident("/incident declare checkout --sev=sev1 is down"),
            expected
        );
        assert_eq!(
            incident("/incident declare checkout is down --severity P1"),
            expected
        );
        assert_eq!(
            incident("/incident declare checkout is down \u{2014}sev P1"),
            expected
        );
    }

    #[test]
    fn declare_does_not_read_a_leading_number_as_an_incident_id() {
        assert_eq!(
            incident("/incident declare 500s on checkout"),
            IncidentCmd::Declare {
                title: "500s on checkout".into(),
                severity: None
            }
        );
    }

    #[test]
    fn declare_keeps_quoted_dashes_in_the_title() {
        assert_eq!(
            incident(r#"/incident declare "deploy --force" broke prod"#),
            IncidentCmd::Declare {
                title: "deploy --force broke prod".into(),
                severity: None
            }
        );
    }

    #[test]
    fn declare_without_a_title_asks_for_one() {
        let err = error("/incident declare --sev P2");
        assert_eq!(err.command, "incident declare");
        assert_eq!(
            err.message,
            "missing the incident title, e.g. /incident declare checkout is down --sev P1"
        );
        assert_eq!(err.usage, "/incident declare <title...> [--sev P1|P2|P3]");
    }

    #[test]
    fn declare_with_a_bad_severity_names_it() {
        let err = error("/incident declare db down --sev P7");
        assert_eq!(err.message, "expected a severity P1, P2 or P3, got \"P7\"");
    }

    #[test]
    fn declare_with_a_severity_option_and_no_value_shows_an_example() {
        assert_eq!(
            error("/incident declare db down --sev").message,
            "--sev needs a value, e.g. --sev P1"
        );
        assert_eq!(
            error("/incident declare db down --sev=").message,
            "--sev needs a value, e.g. --sev P1"
        );
    }

    #[test]
    fn declare_with_the_severity_given_twice_is_refused() {
        assert_eq!(
            error("/incident declare db down --sev P1 --sev P2").message,
            "--sev is given twice; give it once"
        );
    }

    #[test]
    fn declare_with_a_misspelt_option_names_it_and_the_real_one() {
        assert_eq!(
            error("/incident declare db down --sve P1").message,
            "unknown option \"--sve\"; this command takes --sev (put text that starts with -- in quotes)"
        );
    }

    // ack, reopen, timeline

    #[test]
    fn ack_without_id_leaves_the_incident_to_the_thread() {
        assert_eq!(incident("/incident ack"), IncidentCmd::Ack { id: None });
    }

    #[test]
    fn ack_with_an_id_in_any_spelling_names_that_incident() {
        for input in [
            "/incident ack INC-42",
            "/incident ack inc-42",
            "/incident ack 42",
        ] {
            assert_eq!(incident(input), IncidentCmd::Ack { id: INC_42 }, "{input}");
        }
    }

    #[test]
    fn ack_with_something_that_is_not_an_id_says_what_an_id_looks_like() {
        let err = error("/incident ack now");
        assert_eq!(err.command, "incident ack");
        assert_eq!(
            err.message,
            "expected an incident ID like INC-42 or 42, got \"now\""
        );
        assert_eq!(err.usage, "/incident ack [ID]");
    }

    #[test]
    fn ack_with_two_ids_refuses_the_second() {
        assert_eq!(
            error("/incident ack 42 43").message,
            "unexpected extra argument \"43\""
        );
    }

    #[test]
    fn reopen_takes_an_optional_id() {
        assert_eq!(
            incident("/incident reopen"),
            IncidentCmd::Reopen { id: None }
        );
        assert_eq!(
            incident("/incident reopen INC-42"),
            IncidentCmd::Reopen { id: INC_42 }
        );
        assert_eq!(
            error("/incident reopen INC-42 please").message,
            "unexpected extra argument \"please\""
        );
    }

    #[test]
    fn timeline_takes_an_optional_id() {
        assert_eq!(
            incident("/incident timeline"),
            IncidentCmd::Timeline { id: None }
        );
        assert_eq!(
            incident("/incident timeline 42"),
            IncidentCmd::Timeline { id: INC_42 }
        );
        assert_eq!(
            error("/incident timeline INC-0").message,
            "incident IDs start at INC-1, got \"INC-0\""
        );
    }

    // resolve

    #[test]
    fn resolve_alone_resolves_the_thread_incident_without_a_note() {
        assert_eq!(
            incident("/incident resolve"),
            IncidentCmd::Resolve {
                id: None,
                note: None
            }
        );
    }

    #[test]
    fn resolve_takes_an_id_and_a_closing_note() {
        assert_eq!(
            incident("/incident resolve INC-42 rolled back the deploy"),
            IncidentCmd::Resolve {
                id: INC_42,
                note: Some("rolled back the deploy".into())
            }
        );
    }

    #[test]
    fn resolve_with_only_a_note_leaves_the_incident_to_the_thread() {
        assert_eq!(
            incident(r#"/incident resolve "rolled back""#),
            IncidentCmd::Resolve {
                id: None,
                note: Some("rolled back".into())
            }
        );
    }

    #[test]
    fn resolve_refuses_a_malformed_id_instead_of_taking_it_as_the_note() {
        assert_eq!(
            error("/incident resolve INC-4x fixed").message,
            "expected an incident ID like INC-42 or 42, got \"INC-4x\""
        );
    }

    // sev

    #[test]
    fn sev_with_only_a_severity_changes_the_thread_incident() {
        assert_eq!(
            incident("/incident sev P2"),
            IncidentCmd::Sev {
                id: None,
                severity: Severity::P2
            }
        );
    }

    #[test]
    fn sev_with_an_id_and_a_severity_changes_that_incident() {
        assert_eq!(
            incident("/incident sev inc-42 sev1"),
            IncidentCmd::Sev {
                id: INC_42,
                severity: Severity::P1
            }
        );
    }

    #[test]
    fn sev_with_a_bad_severity_shows_the_message_and_usage() {
        let err = error("/incident sev P7");
        assert_eq!(
            err.to_string(),
            "incident sev: expected a severity P1, P2 or P3, got \"P7\"\nusage: /incident sev [ID] P1|P2|P3"
        );
    }

    #[test]
    fn sev_without_a_severity_asks_for_one() {
        assert_eq!(
            error("/incident sev").message,
            "missing the severity: expected P1, P2 or P3"
        );
        assert_eq!(
            error("/incident sev INC-42").message,
            "missing the severity: expected P1, P2 or P3"
        );
    }

    #[test]
    fn sev_with_a_bare_digit_explains_that_it_was_read_as_an_incident() {
        assert_eq!(
            error("/incident sev 1").message,
            "missing the severity: expected P1, P2 or P3 (a bare 1 is read as incident INC-1; for the severity write P1)"
        );
    }

    #[test]
    fn sev_with_anything_after_the_severity_is_refused() {
        assert_eq!(
            error("/incident sev 42 P1 now").message,
            "unexpected extra argument \"now\""
        );
    }

    // status

    #[test]
    fn status_without_a_state_only_shows_it() {
        assert_eq!(
            incident("/incident status"),
            IncidentCmd::Status {
                id: None,
                set: None
            }
        );
        assert_eq!(
            incident("/incident status 42"),
            IncidentCmd::Status {
                id: INC_42,
                set: None
            }
        );
    }

    #[test]
    fn status_with_a_state_sets_it() {
        assert_eq!(
            incident("/incident status Mitigated"),
            IncidentCmd::Status {
                id: None,
                set: Some(State::Mitigated)
            }
        );
        assert_eq!(
            incident("/incident status INC-42 resolved"),
            IncidentCmd::Status {
                id: INC_42,
                set: Some(State::Resolved)
            }
        );
    }

    #[test]
    fn status_with_an_unknown_state_lists_the_real_ones() {
        let err = error("/incident status 42 fixed");
        assert_eq!(err.command, "incident status");
        assert_eq!(
            err.message,
            "expected a state triggered, acknowledged, mitigated or resolved, got \"fixed\""
        );
    }

    #[test]
    fn status_with_anything_after_the_state_is_refused() {
        assert_eq!(
            error("/incident status 42 resolved now").message,
            "unexpected extra argument \"now\""
        );
    }

    // note

    #[test]
    fn note_takes_an_id_and_the_text() {
        assert_eq!(
            incident("/incident note INC-42 restarted the worker"),
            IncidentCmd::Note {
                id: INC_42,
                text: "restarted the worker".into()
            }
        );
    }

    #[test]
    fn note_without_an_id_goes_to_the_thread_incident() {
        assert_eq!(
            incident("/incident note restarted the worker"),
            IncidentCmd::Note {
                id: None,
                text: "restarted the worker".into()
            }
        );
    }

    #[test]
    fn note_text_starting_with_a_number_must_be_quoted_to_stay_text() {
        assert_eq!(
            incident("/incident note 500 errors since 03:10"),
            IncidentCmd::Note {
                id: Some(IncidentRef(500)),
                text: "errors since 03:10".into()
            }
        );
        assert_eq!(
            incident(r#"/incident note "500 errors" since 03:10"#),
            IncidentCmd::Note {
                id: None,
                text: "500 errors since 03:10".into()
            }
        );
    }

    #[test]
    fn note_keeps_line_breaks_and_dashes_as_typed() {
        assert_eq!(
            incident("/incident note 42 ran with --force\nqueue draining"),
            IncidentCmd::Note {
                id: INC_42,
                text: "ran with --force\nqueue draining".into()
            }
        );
    }

    #[test]
    fn note_without_text_asks_for_it() {
        let err = error("/incident note INC-42");
        assert_eq!(err.message, "missing the note text");
        assert_eq!(err.usage, "/incident note [ID] <text...>");
        assert_eq!(
            error(r#"/incident note """#).message,
            "missing the note text"
        );
    }

    // postmortem

    #[test]
    fn postmortem_defaults_to_markdown() {
        assert_eq!(
            incident("/incident postmortem"),
            IncidentCmd::Postmortem {
                id: None,
                format: ExportFormat::Markdown
            }
        );
    }

    #[test]
    fn postmortem_takes_an_id_and_a_format() {
        assert_eq!(
            incident("/incident postmortem INC-42 json"),
            IncidentCmd::Postmortem {
                id: INC_42,
                format: ExportFormat::Json
            }
        );
        assert_eq!(
            incident("/incident postmortem markdown"),
            IncidentCmd::Postmortem {
                id: None,
                format: ExportFormat::Markdown
            }
        );
    }

    #[test]
    fn postmortem_with_an_unknown_format_names_the_ones_it_has() {
        assert_eq!(
            error("/incident postmortem 42 pdf").message,
            "expected a format md or json, got \"pdf\""
        );
        assert_eq!(
            error("/incident postmortem 42 md now").message,
            "unexpected extra argument \"now\""
        );
    }

    // followup

    #[test]
    fn followup_takes_text_owner_and_due_date_in_any_order() {
        let expected = IncidentCmd::Followup {
            id: INC_42,
            text: "add an alert on DLQ growth".into(),
            owner: Some("@ann".into()),
            due: Some("2025-03-14".into()),
        };
        assert_eq!(
            incident(
                "/incident followup INC-42 add an alert on DLQ growth --owner @ann --due 2025-03-14"
            ),
            expected
        );
        assert_eq!(
            incident(
                "/incident followup --due 2025-03-14 --owner=@ann 42 add an alert on DLQ growth"
            ),
            expected
        );
    }

    #[test]
    fn followup_needs_only_the_text() {
        assert_eq!(
            incident("/incident followup write the postmortem"),
            IncidentCmd::Followup {
                id: None,
                text: "write the postmortem".into(),
                owner: None,
                due: None
            }
        );
    }

    #[test]
    fn followup_keeps_a_platform_mention_as_the_owner() {
        let IncidentCmd::Followup { owner, .. } =
            incident("/incident followup fix it --owner <@U123ABC>")
        else {
            panic!("not a followup");
        };
        assert_eq!(owner.as_deref(), Some("<@U123ABC>"));
    }

    #[test]
    fn followup_without_text_asks_what_has_to_be_done() {
        let err = error("/incident followup 42 --owner @ann");
        assert_eq!(
            err.message,
            "missing the follow-up text: what has to be done?"
        );
        assert_eq!(
            err.usage,
            "/incident followup [ID] <text...> [--owner @who] [--due YYYY-MM-DD]"
        );
    }

    #[test]
    fn followup_with_an_unreadable_due_date_shows_the_expected_shape() {
        assert_eq!(
            error("/incident followup fix it --due friday").message,
            "expected a due date as YYYY-MM-DD, e.g. 2025-03-14, got \"friday\""
        );
    }

    #[test]
    fn followup_with_an_impossible_due_date_says_why() {
        assert_eq!(
            error("/incident followup fix it --due 2025-02-30").message,
            "\"2025-02-30\" is not a date: that month has 28 days"
        );
    }

    #[test]
    fn followup_with_an_option_missing_its_value_shows_an_example() {
        assert_eq!(
            error("/incident followup fix it --owner --due 2025-03-14").message,
            "--owner needs a value, e.g. --owner @ann"
        );
        assert_eq!(
            error("/incident followup fix it --due").message,
            "--due needs a value, e.g. --due 2025-03-14"
        );
    }

    #[test]
    fn followup_with_a_misspelt_option_lists_the_real_ones() {
        assert_eq!(
            error("/incident followup fix it --onwer @ann").message,
            "unknown option \"--onwer\"; this command takes --owner and --due (put text that starts with -- in quotes)"
        );
    }

    // list

    #[test]
    fn list_shows_open_incidents_unless_all_is_asked_for() {
        assert_eq!(incident("/incident list"), IncidentCmd::List { all: false });
        assert_eq!(
            incident("/incident list open"),
            IncidentCmd::List { all: false }
        );
        assert_eq!(
            incident("/incident list ALL"),
            IncidentCmd::List { all: true }
        );
    }

    #[test]
    fn list_with_another_word_says_what_it_accepts() {
        assert_eq!(
            error("/incident list closed").message,
            "expected open or all, got \"closed\""
        );
        assert_eq!(
            error("/incident list all now").message,
            "unexpected extra argument \"now\""
        );
    }
}
