//! The chat command grammar of firstline, shared by every chat platform
//! (Slack, Discord, the console).
//!
//! A platform hands [`parse`] the text someone typed and gets back either a
//! [`Command`] to carry out or a [`ParseError`] to show them. Nothing here
//! does IO or knows about a platform, so the grammar is the same everywhere
//! and is tested without one.
//!
//! # Layout
//!
//! - `lib.rs`: [`parse`], the top-level [`Command`], and the commands that
//!   have no subcommands (`/oncall`, `/page`, `/help`).
//! - `incident.rs`, `runbook.rs`, `action.rs`: one file per command group,
//!   each with its enum ([`IncidentCmd`], [`RunbookCmd`], [`ActionCmd`]) and
//!   the parse step for its subcommands.
//! - `value.rs`: the values commands carry ([`IncidentRef`], [`Severity`],
//!   [`State`], [`ExportFormat`]) and their spellings.
//! - `help.rs`: the one table of usage lines and descriptions ([`COMMANDS`]),
//!   and [`help`] and [`usage`] rendered from it. Errors take their usage
//!   line from the same table, so help and parser cannot drift apart.
//! - `lex.rs`: splitting input into words (quotes, options) and the cursor
//!   each parse step walks.
//! - `error.rs`: [`ParseError`].
//!
//! # Grammar in short
//!
//! The leading slash is optional and command words are case-insensitive.
//! `[ID]` is an optional incident reference (`INC-42`, `inc-42`, `42`); left
//! out, it means the incident of the thread or channel, which the platform
//! fills in with [`Command::with_incident`]. Double quotes group words and
//! keep text that starts with a number from being read as an ID. An unknown
//! top-level word is not an error ([`Command::Unknown`]) because a platform
//! may see messages that were never meant for the bot; an unknown
//! subcommand of a known command is.

mod action;
mod error;
mod help;
mod incident;
mod lex;
mod runbook;
mod value;

pub use action::ActionCmd;
pub use error::ParseError;
pub use help::{COMMANDS, GROUPS as COMMAND_GROUPS, help, usage};
pub use incident::IncidentCmd;
pub use runbook::RunbookCmd;
pub use value::{ExportFormat, IncidentRef, Severity, State, ValueError};

use lex::{Args, Token, Unclosed, tokenize};

/// Everything a person can ask firstline to do from chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/incident ...`: work with incidents.
    Incident(IncidentCmd),
    /// `/runbook ...`: work with runbooks.
    Runbook(RunbookCmd),
    /// `/oncall [SCHEDULE]`: show who is on call now, for every schedule or
    /// one.
    Oncall {
        /// The schedule's name as typed (may contain spaces); `None` for all.
        schedule: Option<String>,
    },
    /// `/page <@who|team> [message...]`: page a person or a team.
    Page {
        /// Who to page, as typed (`@ann`, a team name, or a platform mention
        /// such as `<@U123>`); the bot resolves it against its contacts.
        target: String,
        /// Sent with the page so the person knows why before opening chat.
        message: Option<String>,
    },
    /// `/action ...`: work with remediation actions.
    Action(ActionCmd),
    /// `/help [command]`: show all commands, or one in detail.
    Help {
        /// The command asked about, lower-case without its slash (e.g.
        /// `"incident sev"`), ready for [`help`]; `None` for all commands.
        topic: Option<String>,
    },
    /// A first word that is not one of firstline's commands.
    ///
    /// Not an error: the platform decides whether to ignore it (a message
    /// meant for people) or answer with [`help`].
    Unknown {
        /// The word, lower-case without its slash, to echo back.
        name: String,
    },
}

impl Command {
    /// Fills every incident the command left out with `implied`, the incident
    /// of the thread or channel it was typed in.
    ///
    /// Platforms call this when a message comes from an incident's thread so
    /// that `/incident ack` there means that incident; an incident typed out
    /// explicitly is kept. Commands without an incident slot are unchanged.
    #[must_use]
    pub fn with_incident(mut self, implied: IncidentRef) -> Command {
        let slot = match &mut self {
            Command::Incident(cmd) => match cmd {
                IncidentCmd::Ack { id }
                | IncidentCmd::Resolve { id, .. }
                | IncidentCmd::Reopen { id }
                | IncidentCmd::Sev { id, .. }
                | IncidentCmd::Status { id, .. }
                | IncidentCmd::Note { id, .. }
                | IncidentCmd::Timeline { id }
                | IncidentCmd::Postmortem { id, .. }
                | IncidentCmd::Followup { id, .. } => Some(id),
                IncidentCmd::Declare { .. } | IncidentCmd::List { .. } => None,
            },
            Command::Runbook(RunbookCmd::Run { incident, .. }) => Some(incident),
            Command::Action(ActionCmd::List { id } | ActionCmd::Propose { id, .. }) => Some(id),
            Command::Runbook(RunbookCmd::List | RunbookCmd::Show { .. })
            | Command::Oncall { .. }
            | Command::Page { .. }
            | Command::Help { .. }
            | Command::Unknown { .. } => None,
        };
        if let Some(slot) = slot {
            slot.get_or_insert(implied);
        }
        self
    }
}

/// The top-level words that have subcommands.
const GROUPS: [&str; 3] = ["incident", "runbook", "action"];

/// Whether `word` (lower-case, no slash) is one of firstline's commands.
fn is_known(word: &str) -> bool {
    GROUPS.contains(&word) || matches!(word, "oncall" | "page" | "help")
}

/// Parses one chat command, e.g. `/incident sev INC-42 P1`.
///
/// Empty input asks for help (`Command::Help { topic: None }`); an unknown
/// first word is [`Command::Unknown`]. Everything else either parses fully or
/// is a [`ParseError`] naming the command, what was wrong and its usage.
///
/// # Errors
///
/// A known command with a missing, extra or malformed argument (incident
/// ID, severity, state, format, due date, option), an unknown or missing
/// subcommand, or an unclosed quote.
pub fn parse(input: &str) -> Result<Command, ParseError> {
    let tokens = match tokenize(input) {
        Ok(tokens) => tokens,
        Err(Unclosed) => return unclosed_quote(input),
    };
    let mut tokens = tokens.into_iter();
    let Some(word) = command_word(&mut tokens) else {
        return Ok(Command::Help { topic: None });
    };
    let rest: Vec<Token> = tokens.collect();
    if let Some(group) = GROUPS.into_iter().find(|group| *group == word) {
        return subcommand(input, group, rest);
    }
    let command = match word.as_str() {
        "oncall" => Command::Oncall {
            schedule: Args::new(input, rest, "oncall").text(),
        },
        "page" => {
            let mut args = Args::new(input, rest, "page");
            let target = args
                .required(
                    "missing who to page: give a @person or a team, e.g. /page @ann db is down",
                )?
                .text;
            Command::Page {
                target,
                message: args.text(),
            }
        }
        "help" => Command::Help {
            topic: Args::new(input, rest, "help")
                .text()
                .map(|topic| help::normalise(&topic))
                .filter(|topic| !topic.is_empty()),
        },
        _ => Command::Unknown { name: word },
    };
    Ok(command)
}

/// Takes the command word, lower-cased and without its slash; a lone `/`
/// followed by a space is skipped.
fn command_word(tokens: &mut impl Iterator<Item = Token>) -> Option<String> {
    loop {
        let token = tokens.next()?;
        let word = token.text.strip_prefix('/').unwrap_or(&token.text);
        if !word.is_empty() || token.quoted {
            return Some(word.to_lowercase());
        }
    }
}

/// Dispatches `/group <sub> ...` to the group's parse step.
fn subcommand(input: &str, group: &'static str, rest: Vec<Token>) -> Result<Command, ParseError> {
    let mut rest = rest.into_iter();
    let Some(sub) = rest.next() else {
        return Err(group_error(
            group,
            format!(
                "missing a subcommand; expected one of {}",
                help::subcommands(group).join(", ")
            ),
        ));
    };
    let name = sub.text.to_lowercase();
    if name == "help" {
        return Ok(Command::Help {
            topic: Some(group.to_string()),
        });
    }
    if !help::subcommands(group).contains(&name.as_str()) {
        return Err(unknown_subcommand(group, &sub.text));
    }
    let args = Args::new(input, rest.collect(), &format!("{group} {name}"));
    Ok(match group {
        "incident" => Command::Incident(incident::parse(&name, args)?),
        "runbook" => Command::Runbook(runbook::parse(&name, args)?),
        _ => Command::Action(action::parse(&name, args)?),
    })
}

fn group_error(group: &str, message: String) -> ParseError {
    ParseError {
        command: group.to_string(),
        message,
        usage: usage(group).unwrap_or("/help [command]"),
    }
}

/// The error for `/group <sub>` when `sub` is not one of the group's
/// subcommands.
pub(crate) fn unknown_subcommand(group: &str, sub: &str) -> ParseError {
    group_error(
        group,
        format!(
            "unknown subcommand {sub:?}; expected one of {}",
            help::subcommands(group).join(", ")
        ),
    )
}

/// An unclosed quote is reported against the command it was typed into; a
/// message that is not a firstline command is left alone, as always.
fn unclosed_quote(input: &str) -> Result<Command, ParseError> {
    let mut words = input
        .split_whitespace()
        .map(|w| w.strip_prefix('/').unwrap_or(w).to_lowercase())
        .filter(|w| !w.is_empty());
    let first = words.next().unwrap_or_default();
    if !is_known(&first) {
        return Ok(Command::Unknown { name: first });
    }
    let mut command = first.clone();
    if GROUPS.contains(&first.as_str())
        && let Some(sub) = words.next()
        && help::subcommands(&first).contains(&sub.as_str())
    {
        command = format!("{first} {sub}");
    }
    Err(ParseError {
        usage: usage(&command).unwrap_or("/help [command]"),
        command,
        message: "unclosed quote: add the closing \" or remove the opening one".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(input: &str) -> ParseError {
        match parse(input) {
            Err(err) => err,
            Ok(cmd) => panic!("{input:?} parsed as {cmd:?}"),
        }
    }

    #[test]
    fn empty_input_asks_for_help() {
        for input in ["", "   ", "/", " / "] {
            assert_eq!(parse(input), Ok(Command::Help { topic: None }), "{input:?}");
        }
    }

    #[test]
    fn the_leading_slash_is_optional_and_command_words_ignore_case() {
        let expected = Ok(Command::Incident(IncidentCmd::Ack {
            id: Some(IncidentRef(42)),
        }));
        for input in [
            "/incident ack 42",
            "incident ack 42",
            "/INCIDENT Ack inc-42",
            "  /incident\tack  INC-42 ",
        ] {
            assert_eq!(parse(input), expected, "{input:?}");
        }
    }

    #[test]
    fn an_unknown_command_is_returned_for_the_platform_to_decide() {
        assert_eq!(
            parse("/Deploy prod now"),
            Ok(Command::Unknown {
                name: "deploy".into()
            })
        );
        assert_eq!(
            parse("good morning team"),
            Ok(Command::Unknown {
                name: "good".into()
            })
        );
    }

    #[test]
    fn an_unclosed_quote_in_ordinary_chat_is_not_an_error() {
        assert_eq!(
            parse("he said \"hi"),
            Ok(Command::Unknown { name: "he".into() })
        );
    }

    #[test]
    fn an_unclosed_quote_is_reported_against_the_subcommand_it_was_typed_into() {
        let err = error("/incident note 42 \"db is down");
        assert_eq!(
            err.to_string(),
            "incident note: unclosed quote: add the closing \" or remove the opening one\nusage: /incident note [ID] <text...>"
        );
    }

    #[test]
    fn an_unclosed_quote_after_a_command_without_subcommands_names_that_command() {
        let err = error("/page @ann \"db is down");
        assert_eq!(err.command, "page");
        assert_eq!(err.usage, "/page <@who|team> [message...]");
    }

    #[test]
    fn an_unknown_subcommand_is_named_and_the_real_ones_listed() {
        let err = error("/incident frobnicate 42");
        assert_eq!(err.command, "incident");
        assert_eq!(
            err.message,
            "unknown subcommand \"frobnicate\"; expected one of declare, ack, resolve, reopen, sev, status, note, timeline, postmortem, followup, list"
        );
        assert!(err.usage.starts_with("/incident declare|ack|"));
        assert_eq!(
            error("/runbook delete x").message,
            "unknown subcommand \"delete\"; expected one of list, show, run"
        );
        assert_eq!(
            error("/action run restart").message,
            "unknown subcommand \"run\"; expected one of list, propose"
        );
    }

    #[test]
    fn a_group_without_a_subcommand_lists_the_subcommands() {
        let err = error("/runbook");
        assert_eq!(
            err.to_string(),
            "runbook: missing a subcommand; expected one of list, show, run\nusage: /runbook list|show|run ..."
        );
        assert_eq!(
            error("/action").message,
            "missing a subcommand; expected one of list, propose"
        );
        assert_eq!(error("/incident").command, "incident");
    }

    #[test]
    fn help_as_a_subcommand_asks_for_the_group_help() {
        assert_eq!(
            parse("/incident help"),
            Ok(Command::Help {
                topic: Some("incident".into())
            })
        );
    }

    #[test]
    fn every_command_in_the_help_table_is_understood_by_the_parser() {
        for (name, _, _) in COMMANDS {
            if let Err(err) = parse(name) {
                assert!(
                    !err.message.starts_with("unknown subcommand"),
                    "{name}: {err}"
                );
                assert_eq!(err.command, *name, "errors name the command");
            }
        }
    }

    #[test]
    fn oncall_without_a_schedule_asks_about_everyone() {
        assert_eq!(parse("/oncall"), Ok(Command::Oncall { schedule: None }));
    }

    #[test]
    fn oncall_takes_a_schedule_name_even_with_spaces() {
        assert_eq!(
            parse("/oncall platform primary"),
            Ok(Command::Oncall {
                schedule: Some("platform primary".into())
            })
        );
        assert_eq!(
            parse("/oncall \"platform primary\""),
            Ok(Command::Oncall {
                schedule: Some("platform primary".into())
            })
        );
    }

    #[test]
    fn page_takes_a_target_and_an_optional_message() {
        assert_eq!(
            parse("/page @ann checkout is down, INC-42"),
            Ok(Command::Page {
                target: "@ann".into(),
                message: Some("checkout is down, INC-42".into())
            })
        );
        assert_eq!(
            parse("/page payments-team"),
            Ok(Command::Page {
                target: "payments-team".into(),
                message: None
            })
        );
    }

    #[test]
    fn page_without_a_target_asks_who_to_page() {
        let err = error("/page");
        assert_eq!(err.command, "page");
        assert_eq!(
            err.message,
            "missing who to page: give a @person or a team, e.g. /page @ann db is down"
        );
        assert_eq!(err.usage, "/page <@who|team> [message...]");
    }

    #[test]
    fn help_without_a_topic_asks_for_everything() {
        assert_eq!(parse("/help"), Ok(Command::Help { topic: None }));
    }

    #[test]
    fn help_topics_are_normalised_for_the_help_function() {
        assert_eq!(
            parse("/help /Incident  SEV"),
            Ok(Command::Help {
                topic: Some("incident sev".into())
            })
        );
        let Ok(Command::Help { topic }) = parse("/help incident sev") else {
            panic!("not help");
        };
        assert!(help(topic.as_deref()).starts_with("/incident sev [ID] P1|P2|P3"));
    }

    #[test]
    fn parse_errors_print_the_command_the_problem_and_the_usage() {
        let err = error("/incident sev 42 P7");
        assert_eq!(
            err.to_string(),
            "incident sev: expected a severity P1, P2 or P3, got \"P7\"\nusage: /incident sev [ID] P1|P2|P3"
        );
        let source: &dyn std::error::Error = &err;
        assert!(source.source().is_none());
    }

    #[test]
    fn every_error_message_is_lower_case_without_a_trailing_period() {
        let inputs = [
            "/incident",
            "/incident frobnicate",
            "/incident declare",
            "/incident ack now",
            "/incident sev P7",
            "/incident sev 1",
            "/incident note 42",
            "/incident followup x --due 2025-02-30",
            "/incident followup x --bogus",
            "/incident list closed",
            "/incident note \"x",
            "/runbook show",
            "/action propose",
            "/page",
        ];
        for input in inputs {
            let message = error(input).message;
            let first = message.chars().next().unwrap();
            assert!(
                !first.is_uppercase() && !message.ends_with('.'),
                "{input}: {message}"
            );
        }
    }

    #[test]
    fn a_thread_incident_fills_in_only_what_was_left_out() {
        let thread = IncidentRef(7);
        assert_eq!(
            parse("/incident ack").unwrap().with_incident(thread),
            Command::Incident(IncidentCmd::Ack { id: Some(thread) })
        );
        assert_eq!(
            parse("/incident ack 42").unwrap().with_incident(thread),
            Command::Incident(IncidentCmd::Ack {
                id: Some(IncidentRef(42))
            })
        );
        assert_eq!(
            parse("/runbook run dlq").unwrap().with_incident(thread),
            Command::Runbook(RunbookCmd::Run {
                id: "dlq".into(),
                incident: Some(thread)
            })
        );
        assert_eq!(
            parse("/action propose restart")
                .unwrap()
                .with_incident(thread),
            Command::Action(ActionCmd::Propose {
                id: Some(thread),
                action: "restart".into(),
                params: vec![]
            })
        );
        let declare = parse("/incident declare db down").unwrap();
        assert_eq!(declare.clone().with_incident(thread), declare);
    }
}
