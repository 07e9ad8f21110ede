//! `/action ...`: remediation actions, which run only after approval.

use crate::error::ParseError;
use crate::lex::Args;
use crate::value::IncidentRef;

/// A parsed `/action` subcommand.
///
/// There is no "run": the grammar only lets people propose, because nothing
/// that changes a system runs until an authorised approver reacts to the
/// proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionCmd {
    /// `/action list [ID]`: list the remediation actions proposed or
    /// available for an incident.
    List {
        /// The incident, or `None` for the thread's.
        id: Option<IncidentRef>,
    },
    /// `/action propose [ID] <ACTION-ID> [ID] [key=value…]`: propose a
    /// remediation action; it runs only once an approver reacts to approve
    /// it. The incident may come before or after the action.
    Propose {
        /// The incident, or `None` for the thread's.
        id: Option<IncidentRef>,
        /// The action's ID as typed (as shown by `/action list`).
        action: String,
        /// `key=value` words: parameters overriding the action's own.
        params: Vec<(String, String)>,
    },
}

/// Parses the words after `/action <sub>`; `sub` is lower-case and known to
/// the help table.
pub(crate) fn parse(sub: &str, mut args: Args<'_>) -> Result<ActionCmd, ParseError> {
    let cmd = match sub {
        "list" => ActionCmd::List {
            id: args.only_id()?,
        },
        "propose" => {
            let mut id = args.optional_id()?;
            let action = args
                .required("missing the action ID (see /action list)")?
                .text;
            if id.is_none() {
                id = args.optional_id()?;
            }
            let mut params = Vec::new();
            while let Some(token) = args.peek() {
                let Some((key, value)) = token.text.split_once('=') else {
                    break;
                };
                let key = key.trim();
                if key.is_empty()
                    || !key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(args.error(format!(
                        "{:?} is not key=value with a plain key (letters, digits, _)",
                        token.text
                    )));
                }
                params.push((key.to_string(), value.to_string()));
                args.next();
            }
            args.finish()?;
            ActionCmd::Propose { id, action, params }
        }
        other => return Err(crate::unknown_subcommand("action", other)),
    };
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use crate::{ActionCmd, Command, IncidentRef, ParseError, parse};

    fn action(input: &str) -> ActionCmd {
        match parse(input) {
            Ok(Command::Action(cmd)) => cmd,
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
    fn list_takes_an_optional_incident() {
        assert_eq!(action("/action list"), ActionCmd::List { id: None });
        assert_eq!(
            action("/action list INC-42"),
            ActionCmd::List {
                id: Some(IncidentRef(42))
            }
        );
    }

    #[test]
    fn list_with_something_that_is_not_an_id_says_so() {
        let err = error("/action list restart");
        assert_eq!(err.command, "action list");
        assert_eq!(
            err.message,
            "expected an incident ID like INC-42 or 42, got \"restart\""
        );
        assert_eq!(err.usage, "/action list [ID]");
    }

    #[test]
    fn propose_with_only_an_action_is_for_the_thread_incident() {
        assert_eq!(
            action("/action propose restart-worker"),
            ActionCmd::Propose {
                id: None,
                action: "restart-worker".into(),
                params: vec![]
            }
        );
    }

    #[test]
    fn propose_with_an_incident_and_an_action_names_both() {
        assert_eq!(
            action("/action propose 42 restart-worker"),
            ActionCmd::Propose {
                id: Some(IncidentRef(42)),
                action: "restart-worker".into(),
                params: vec![]
            }
        );
    }

    #[test]
    fn propose_without_an_action_points_to_the_list() {
        for input in ["/action propose", "/action propose INC-42"] {
            let err = error(input);
            assert_eq!(err.message, "missing the action ID (see /action list)");
            assert_eq!(err.usage, "/action propose [ID] <ACTION-ID> [key=value...]");
        }
    }

    #[test]
    fn propose_takes_the_incident_after_the_action_and_key_value_parameters() {
        assert_eq!(
            action("/action propose lower_parallelism INC-7 value=2 component=notification-worker"),
            ActionCmd::Propose {
                id: Some(IncidentRef(7)),
                action: "lower_parallelism".into(),
                params: vec![
                    ("value".into(), "2".into()),
                    ("component".into(), "notification-worker".into())
                ]
            }
        );
        assert!(
            error("/action propose x =2")
                .message
                .contains("is not key=value")
        );
    }

    #[test]
    fn propose_accepts_one_action_at_a_time() {
        assert_eq!(
            error("/action propose 42 restart-worker lower-parallelism").message,
            "unexpected extra argument \"lower-parallelism\""
        );
    }
}
