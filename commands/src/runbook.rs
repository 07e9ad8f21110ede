//! `/runbook ...`: finding and running the runbooks shipped as files.

use crate::error::ParseError;
use crate::lex::Args;
use crate::value::IncidentRef;

/// A parsed `/runbook` subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunbookCmd {
    /// `/runbook list`: list the runbooks.
    List,
    /// `/runbook show <RUNBOOK-ID>`: show a runbook's checks and actions.
    Show {
        /// The runbook's ID as typed; the bot looks it up.
        id: String,
    },
    /// `/runbook run <RUNBOOK-ID> [INCIDENT-ID]`: run a runbook's checks, for
    /// an incident if one is given.
    Run {
        /// The runbook's ID as typed; the bot looks it up.
        id: String,
        /// Where findings are posted; `None` runs it on its own (or, in an
        /// incident's thread, for that incident once the platform fills it in).
        incident: Option<IncidentRef>,
    },
}

/// Parses the words after `/runbook <sub>`; `sub` is lower-case and known
/// to the help table.
pub(crate) fn parse(sub: &str, mut args: Args<'_>) -> Result<RunbookCmd, ParseError> {
    let cmd = match sub {
        "list" => {
            args.finish()?;
            RunbookCmd::List
        }
        "show" => {
            let id = args
                .required("missing the runbook ID (see /runbook list)")?
                .text;
            args.finish()?;
            RunbookCmd::Show { id }
        }
        "run" => {
            let id = args
                .required("missing the runbook ID (see /runbook list)")?
                .text;
            let incident = args.only_id()?;
            RunbookCmd::Run { id, incident }
        }
        other => return Err(crate::unknown_subcommand("runbook", other)),
    };
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use crate::{Command, IncidentRef, ParseError, RunbookCmd, parse};

    fn runbook(input: &str) -> RunbookCmd {
        match parse(input) {
            Ok(Command::Runbook(cmd)) => cmd,
            other => panic!("{input:?} parsed as {other:?}"),
        }
    }

    fn error(input: &str) -> ParseError {
        match parse(input) {
            Err(err) => err,
            Ok(cmd) => panic!("{input:?} parsed as {cmd:?}"),
        }
    }

    #[test]
    fn list_takes_no_arguments() {
        assert_eq!(runbook("/runbook list"), RunbookCmd::List);
        let err = error("/runbook list db");
        assert_eq!(err.command, "runbook list");
        assert_eq!(err.message, "unexpected extra argument \"db\"");
        assert_eq!(err.usage, "/runbook list");
    }

    #[test]
    fn show_takes_the_runbook_id_as_typed() {
        assert_eq!(
            runbook("/runbook show FM-AUTH-01"),
            RunbookCmd::Show {
                id: "FM-AUTH-01".into()
            }
        );
    }

    #[test]
    fn show_without_an_id_points_to_the_list() {
        let err = error("/runbook show");
        assert_eq!(err.message, "missing the runbook ID (see /runbook list)");
        assert_eq!(err.usage, "/runbook show <RUNBOOK-ID>");
    }

    #[test]
    fn show_with_two_ids_refuses_the_second() {
        assert_eq!(
            error("/runbook show outbox-backlog dlq").message,
            "unexpected extra argument \"dlq\""
        );
    }

    #[test]
    fn run_without_an_incident_runs_on_its_own() {
        assert_eq!(
            runbook("/runbook run outbox-backlog"),
            RunbookCmd::Run {
                id: "outbox-backlog".into(),
                incident: None
            }
        );
    }

    #[test]
    fn run_with_an_incident_normalises_its_id() {
        assert_eq!(
            runbook("/runbook run outbox-backlog inc-7"),
            RunbookCmd::Run {
                id: "outbox-backlog".into(),
                incident: Some(IncidentRef(7))
            }
        );
    }

    #[test]
    fn run_with_a_bad_incident_id_says_what_an_id_looks_like() {
        assert_eq!(
            error("/runbook run outbox-backlog now").message,
            "expected an incident ID like INC-42 or 42, got \"now\""
        );
        assert_eq!(
            error("/runbook run outbox-backlog 7 8").message,
            "unexpected extra argument \"8\""
        );
    }

    #[test]
    fn run_without_a_runbook_points_to_the_list() {
        let err = error("/runbook run");
        assert_eq!(err.message, "missing the runbook ID (see /runbook list)");
        assert_eq!(err.usage, "/runbook run <RUNBOOK-ID> [INCIDENT-ID]");
    }
}
