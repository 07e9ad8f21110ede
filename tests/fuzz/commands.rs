//! The chat command grammar: arbitrary strings and lines built from the
//! grammar's own words (see the crate doc for the properties).

use commands::{COMMANDS, Command, IncidentRef, help, parse, usage};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use crate::{Text, fuzz};

#[test]
fn no_chat_message_panics_the_command_parser_or_gets_an_error_without_a_message() {
    fuzz("commands", 40_000, message(), |Text(input)| check(&input));
}

#[test]
fn help_for_every_command_and_group_renders_without_panicking() {
    assert!(!help(None).is_empty());
    let mut topics: Vec<String> = COMMANDS
        .iter()
        .map(|(name, _, _)| name.to_string())
        .collect();
    // The groups, which the table lists only through their subcommands.
    topics.extend(["incident", "runbook", "action"].map(String::from));
    for topic in &topics {
        for spelling in [
            topic.clone(),
            format!("/{}", topic.to_uppercase()),
            format!("  {topic}  "),
        ] {
            assert!(!help(Some(&spelling)).is_empty(), "{spelling:?}");
            assert!(usage(&spelling).is_some(), "{spelling:?} has no usage line");
            // What the table lists, the parser knows.
            if let Err(e) = parse(&spelling) {
                assert!(
                    !e.message.starts_with("unknown subcommand"),
                    "{spelling:?}: {e}"
                );
            }
        }
    }
}

/// The properties of one parse; `Ok` names the outcome.
fn check(input: &str) -> Result<&'static str, String> {
    // Help and usage take any topic.
    let _ = help(Some(input));
    let _ = usage(input);
    match parse(input) {
        Ok(command) => check_command(command),
        Err(e) => {
            let shown = e.to_string();
            if e.message.trim().is_empty() || shown.trim().is_empty() {
                return Err(format!("an error without a message: {e:?}"));
            }
            if e.message.starts_with(char::is_uppercase) || e.message.ends_with('.') {
                return Err(format!(
                    "the message is not lower-case without a trailing period: {:?}",
                    e.message
                ));
            }
            if usage(&e.command) != Some(e.usage) {
                return Err(format!(
                    "the error names {:?} with usage {:?}, which the help table does not pair: {e:?}",
                    e.command, e.usage
                ));
            }
            if !shown.contains(&e.message) || !shown.contains(e.usage) {
                return Err(format!(
                    "the error does not show its message and usage: {shown:?}"
                ));
            }
            Ok("refused")
        }
    }
}

fn check_command(command: Command) -> Result<&'static str, String> {
    if let Command::Help { topic: Some(topic) } = &command {
        if topic.trim().is_empty() {
            return Err(format!("help with an empty topic: {command:?}"));
        }
        let _ = help(Some(topic));
    }
    let outcome = match &command {
        Command::Unknown { .. } => "not a command",
        Command::Help { .. } => "help",
        _ => "a command",
    };
    // Filling in the thread's incident never panics either.
    let _ = command.with_incident(IncidentRef(7));
    Ok(outcome)
}

// ----------------------------------------------------------------------
// Inputs

/// A chat message: anything, or a command (or any word) followed by the
/// grammar's words, joined by separators.
fn message() -> impl Strategy<Value = Text> {
    let head = prop_oneof![
        4 => select(HEADS).prop_map(String::from),
        1 => word(),
    ];
    prop_oneof![
        2 => any::<String>(),
        1 => "\\PC{0,60}",
        7 => (head, vec(word(), 0..8), vec(select(SEPARATORS), 9)).prop_map(
            |(head, words, seps)| {
                let mut out = head;
                for (word, sep) in words.iter().zip(seps) {
                    out.push_str(sep);
                    out.push_str(word);
                }
                out
            }
        ),
    ]
    .prop_map(Text)
}

/// How messages for the bot start: every command of the help table, as
/// typed in a hurry.
const HEADS: &[&str] = &[
    "/incident declare",
    "/incident ack",
    "/incident resolve",
    "/incident reopen",
    "/incident sev",
    "/incident status",
    "/incident note",
    "/incident timeline",
    "/incident postmortem",
    "/incident followup",
    "/incident list",
    "/incident help",
    "/incident",
    "incident SEV",
    "/Incident\tNote",
    "/runbook list",
    "/runbook show",
    "/runbook run",
    "/runbook",
    "/action list",
    "/action propose",
    "/action",
    "/oncall",
    "/page",
    "/help",
    "help incident",
    "/ incident ack",
    "\"/incident\" ack",
    "\u{201c}incident\u{201d} note",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => select(WORDS).prop_map(String::from),
        2 => "\\PC{0,12}",
        1 => any::<String>(),
        1 => (select(WORDS), "\\PC{0,8}").prop_map(|(k, v)| format!("{k}={v}")),
        1 => "\\PC{0,12}".prop_map(|s| format!("\"{s}\"")),
        1 => (any::<char>(), 1_000..20_000usize).prop_map(|(c, n)| c.to_string().repeat(n)),
        1 => (0..u64::MAX).prop_map(|n| format!("INC-{n}")),
        1 => any::<i64>().prop_map(|n| n.to_string()),
    ]
}

const SEPARATORS: &[&str] = &[
    " ", " ", " ", " ", "  ", "\t", "\n", "\r\n", "\u{3000}", "\u{85}", "\u{a0}", "",
];

const WORDS: &[&str] = &[
    // commands and subcommands
    "/incident",
    "incident",
    "/INCIDENT",
    "/Incident",
    "declare",
    "ack",
    "resolve",
    "reopen",
    "sev",
    "status",
    "note",
    "timeline",
    "postmortem",
    "followup",
    "list",
    "help",
    "/runbook",
    "runbook",
    "run",
    "show",
    "/action",
    "propose",
    "/oncall",
    "/page",
    "/help",
    "/",
    "//",
    "frobnicate",
    // values
    "P1",
    "p2",
    "P3",
    "P7",
    "sev1",
    "SEV3",
    "INC-12",
    "inc-42",
    "INC-0",
    "INC-",
    "INC-x",
    "INC--4",
    "42",
    "1",
    "0",
    "99999999999999999999",
    "-5",
    "triggered",
    "acknowledged",
    "mitigated",
    "resolved",
    "md",
    "json",
    "pdf",
    "open",
    "all",
    "@ann",
    "<@U123ABC>",
    "outbox-backlog",
    // options
    "--sev",
    "--sev=P1",
    "--sev=",
    "--severity",
    "\u{2014}sev",
    "\u{2013}owner",
    "--owner",
    "--owner=@ann",
    "--due",
    "--due=2025-02-29",
    "--due=2024-02-29",
    "2025-03-14",
    "2025-13-01",
    "2025-04-31",
    "\u{ff12}\u{ff10}\u{ff12}\u{ff15}-03-14",
    "--",
    "---",
    "--1",
    "-",
    "--bogus",
    // quotes and escapes
    "\"",
    "\u{201c}",
    "\u{201d}",
    "\\\"",
    "\\",
    "\"quoted text\"",
    "\"\"",
    "\u{201c}db is down\u{201d}",
    "key=value",
    "=",
    // unicode whose case mapping changes length, and other oddities
    "\u{130}",
    "\u{1e9e}",
    "\u{1c5}",
    "\u{fb03}",
    "\u{3a3}",
    "\u{0}",
    "\u{200b}",
    "\u{feff}",
    "\u{202e}",
    "\u{fe0f}",
    "日本語",
    "🔥",
    "e\u{301}",
];
