//! The help table and everything rendered from it.
//!
//! Usage lines and descriptions are written once, here, and read by
//! [`help`], [`usage`] and every [`crate::ParseError`], so what help says and
//! what the parser accepts cannot drift apart. The doc comments on the
//! command enums repeat these lines for readers of the code.

/// Every command: `(name, usage, description)`.
///
/// Public so a platform can register its slash commands from it (Discord
/// wants a description per command) instead of keeping a second list. The
/// name is the command without its slash, subcommands after a space.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "incident declare",
        "/incident declare <title...> [--sev P1|P2|P3]",
        "open an incident by hand",
    ),
    (
        "incident ack",
        "/incident ack [ID]",
        "acknowledge an incident: you are on it, paging stops",
    ),
    (
        "incident resolve",
        "/incident resolve [ID] [note...]",
        "mark an incident resolved, with an optional closing note",
    ),
    (
        "incident reopen",
        "/incident reopen [ID]",
        "reopen a resolved incident",
    ),
    (
        "incident sev",
        "/incident sev [ID] P1|P2|P3",
        "change an incident's severity",
    ),
    (
        "incident status",
        "/incident status [ID] [triggered|acknowledged|mitigated|resolved]",
        "show an incident's status, or set it",
    ),
    (
        "incident note",
        "/incident note [ID] <text...>",
        "add a note to an incident's timeline",
    ),
    (
        "incident timeline",
        "/incident timeline [ID]",
        "show what happened during an incident, in order",
    ),
    (
        "incident postmortem",
        "/incident postmortem [ID] [md|json]",
        "export a postmortem draft, Markdown unless json is asked for",
    ),
    (
        "incident followup",
        "/incident followup [ID] <text...> [--owner @who] [--due YYYY-MM-DD]",
        "record a follow-up task for after the incident",
    ),
    (
        "incident list",
        "/incident list [open|all]",
        "list open incidents, or all of them",
    ),
    ("runbook list", "/runbook list", "list the runbooks"),
    (
        "runbook show",
        "/runbook show <RUNBOOK-ID>",
        "show a runbook's checks and actions",
    ),
    (
        "runbook run",
        "/runbook run <RUNBOOK-ID> [INCIDENT-ID]",
        "run a runbook's checks, for an incident if one is given",
    ),
    (
        "oncall",
        "/oncall [SCHEDULE]",
        "show who is on call now, for every schedule or one",
    ),
    (
        "page",
        "/page <@who|team> [message...]",
        "page a person or a team",
    ),
    (
        "action list",
        "/action list [ID]",
        "list the remediation actions proposed or available for an incident",
    ),
    (
        "action propose",
        "/action propose [ID] <ACTION-ID> [key=value...]",
        "propose a remediation action with its parameters; it runs only once an approver reacts to approve it",
    ),
    (
        "help",
        "/help [command]",
        "show all commands, or one in detail",
    ),
];

/// Commands that only group subcommands: `(name, usage, description)`.
///
/// Kept apart from [`COMMANDS`] so the full help lists each thing a person
/// can do once, while `/help incident` and a missing subcommand still have a
/// usage line to show. Public so a platform registering slash commands has
/// each group's description.
pub const GROUPS: &[(&str, &str, &str)] = &[
    (
        "incident",
        "/incident declare|ack|resolve|reopen|sev|status|note|timeline|postmortem|followup|list ...",
        "work with incidents",
    ),
    (
        "runbook",
        "/runbook list|show|run ...",
        "work with runbooks",
    ),
    (
        "action",
        "/action list|propose ...",
        "work with remediation actions",
    ),
];

/// Explains `[ID]`, which appears in most usage lines.
const ID_NOTE: &str = "ID is an incident such as INC-42 (or just 42); leave it out in an incident's thread or channel to mean that incident. Put text in \"quotes\" when it starts with a number.";

/// Lower-cases a command name and drops its slash and extra spaces, so
/// `/Incident  SEV` and `incident sev` find the same entry.
pub(crate) fn normalise(command: &str) -> String {
    command
        .split_whitespace()
        .map(|word| word.strip_prefix('/').unwrap_or(word).to_lowercase())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn find(name: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    COMMANDS.iter().chain(GROUPS).find(|(n, _, _)| *n == name)
}

/// The table's own name and usage line for `command`, if it is one.
pub(crate) fn lookup(command: &str) -> Option<(&'static str, &'static str)> {
    find(&normalise(command)).map(|&(name, usage, _)| (name, usage))
}

/// The subcommand words of a group, in table order, e.g. `declare, ack, ...`.
pub(crate) fn subcommands(group: &str) -> Vec<&'static str> {
    COMMANDS
        .iter()
        .filter_map(|(name, _, _)| name.strip_prefix(group)?.strip_prefix(' '))
        .collect()
}

/// The usage line of a command or subcommand, e.g. `usage("incident sev")`.
///
/// For platforms that show usage on their own terms (Discord's option hints,
/// a console prompt). Accepts the same spellings as `/help`: slash optional,
/// any case. `None` for anything that is not a command.
#[must_use]
pub fn usage(command: &str) -> Option<&'static str> {
    lookup(command).map(|(_, usage)| usage)
}

fn line(usage: &str, description: &str) -> String {
    format!("{usage} - {description}")
}

fn all_commands() -> String {
    let mut out = String::from("firstline commands:\n");
    for (_, usage, description) in COMMANDS {
        out.push_str(&line(usage, description));
        out.push('\n');
    }
    out.push_str(ID_NOTE);
    out.push_str("\nType /help <command> for one command, e.g. /help incident sev");
    out
}

/// Help text for people: every command, or one command in detail.
///
/// `None` (or an empty topic) gives every command on its own line with a short
/// description. A command (`"incident sev"`, `"/page"`) gives its usage and
/// description; a group (`"incident"`) gives all its subcommands. Anything
/// else says there is no such command, suggests commands whose last word
/// matches (`"list"` -> `/incident list`, ...), and lists them all.
#[must_use]
pub fn help(topic: Option<&str>) -> String {
    let topic = normalise(topic.unwrap_or(""));
    if topic.is_empty() {
        return all_commands();
    }
    if let Some((_, usage, description)) = COMMANDS.iter().find(|(n, _, _)| *n == topic) {
        let mut out = format!("{usage}\n{description}");
        if usage.contains("ID]") {
            out.push('\n');
            out.push_str(ID_NOTE);
        }
        return out;
    }
    if let Some((name, _, description)) = GROUPS.iter().find(|(n, _, _)| *n == topic) {
        let mut out = format!("/{name}: {description}\n");
        for (sub, usage, description) in COMMANDS {
            if sub.strip_prefix(name).is_some_and(|s| s.starts_with(' ')) {
                out.push_str(&line(usage, description));
                out.push('\n');
            }
        }
        out.push_str(ID_NOTE);
        return out;
    }
    let similar: Vec<String> = COMMANDS
        .iter()
        .filter(|(name, _, _)| name.rsplit(' ').next() == Some(topic.as_str()))
        .map(|(name, _, _)| format!("/{name}"))
        .collect();
    let suggestion = if similar.is_empty() {
        String::new()
    } else {
        format!(" Did you mean {}?", similar.join(", "))
    };
    let mut out = format!("There is no command \"{topic}\".{suggestion}\n");
    out.push_str(&all_commands());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_help_lists_every_command_on_its_own_line_with_a_description() {
        let text = help(None);
        for (_, usage, description) in COMMANDS {
            assert!(
                text.lines()
                    .any(|l| l == format!("{usage} - {description}")),
                "missing {usage}"
            );
        }
        assert!(text.contains("INC-42"));
    }

    #[test]
    fn an_empty_topic_is_the_full_help() {
        assert_eq!(help(Some("  ")), help(None));
    }

    #[test]
    fn help_for_a_subcommand_shows_its_usage_and_description() {
        let text = help(Some("incident sev"));
        assert!(text.starts_with("/incident sev [ID] P1|P2|P3\nchange an incident's severity"));
        assert!(text.contains("INC-42"), "explains what ID means");
    }

    #[test]
    fn help_topics_ignore_case_slashes_and_spacing() {
        assert_eq!(help(Some("/Incident   SEV")), help(Some("incident sev")));
        assert_eq!(help(Some("/page")), help(Some("page")));
    }

    #[test]
    fn help_for_a_command_without_ids_does_not_explain_ids() {
        assert_eq!(
            help(Some("page")),
            "/page <@who|team> [message...]\npage a person or a team"
        );
    }

    #[test]
    fn help_for_a_group_lists_its_subcommands_and_nothing_else() {
        let text = help(Some("runbook"));
        assert!(text.starts_with("/runbook: work with runbooks\n"));
        assert!(text.contains("/runbook list - list the runbooks"));
        assert!(text.contains("/runbook show <RUNBOOK-ID>"));
        assert!(text.contains("/runbook run <RUNBOOK-ID> [INCIDENT-ID]"));
        assert!(!text.contains("/incident"));
    }

    #[test]
    fn help_for_an_unknown_topic_says_so_and_lists_the_commands() {
        let text = help(Some("deploy"));
        assert!(text.starts_with("There is no command \"deploy\".\n"));
        assert!(text.contains("/incident declare"));
        assert!(text.contains("/help [command]"));
    }

    #[test]
    fn help_for_a_bare_subcommand_word_suggests_the_full_commands() {
        let text = help(Some("list"));
        assert!(text.starts_with(
            "There is no command \"list\". Did you mean /incident list, /runbook list, /action list?"
        ));
    }

    #[test]
    fn usage_finds_commands_subcommands_and_groups_in_any_spelling() {
        assert_eq!(usage("incident sev"), Some("/incident sev [ID] P1|P2|P3"));
        assert_eq!(usage("/INCIDENT sev"), Some("/incident sev [ID] P1|P2|P3"));
        assert_eq!(usage("oncall"), Some("/oncall [SCHEDULE]"));
        assert!(
            usage("incident")
                .unwrap()
                .starts_with("/incident declare|ack|")
        );
        assert_eq!(usage("deploy"), None);
        assert_eq!(usage("incident frobnicate"), None);
    }

    #[test]
    fn group_usage_lines_name_exactly_the_subcommands_in_the_table() {
        for (group, usage, _) in GROUPS {
            let listed = usage
                .strip_prefix(&format!("/{group} "))
                .and_then(|rest| rest.strip_suffix(" ..."))
                .unwrap();
            assert_eq!(listed, subcommands(group).join("|"), "{group}");
        }
    }

    #[test]
    fn every_usage_line_starts_with_its_command() {
        for (name, usage, description) in COMMANDS {
            assert!(usage.starts_with(&format!("/{name}")), "{usage}");
            assert!(!description.ends_with('.'), "{description}");
        }
    }
}
