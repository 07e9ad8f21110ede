//! `firstline discord register`: the application's slash commands for the
//! configured server, generated from the `commands` crate's help table so
//! the grammar and what Discord offers cannot drift apart.
//!
//! Each help-table entry becomes a command (`/oncall`) or a subcommand of
//! its group (`/incident ack`); each word of its usage line after the
//! command becomes an option ([`usage_options`]), which
//! [`super::interactions::command_line`] reads back into the typed line.
//! Registration is Discord's bulk overwrite of the guild's commands (a
//! PUT), so running it again changes nothing.

use serenity::builder::{CreateCommand, CreateCommandOption};
use serenity::model::application::CommandOptionType;
use serenity::model::id::GuildId;

use super::Discord;

/// Discord's longest description.
const DESCRIPTION_CHARS: usize = 100;

/// One word of a usage line as a slash command option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageOption {
    /// The option's name, a valid Discord name: `id`, `title`, `sev`.
    pub name: String,
    /// How the usage line writes it: `[ID]`, `<title...>`, `[--sev P1|P2|P3]`.
    pub word: String,
    pub required: bool,
    /// Spelled `--name value` in the grammar, after the other words.
    pub flag: bool,
    /// The only values it takes (`P1|P2|P3`), if it lists them.
    pub choices: Vec<String>,
}

/// What Discord suggests while an option is typed (autocomplete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completes {
    /// Incident ids (`[ID]`, `[INCIDENT-ID]`): `INC-7`.
    Incident,
    /// Runbook ids (`<RUNBOOK-ID>`).
    Runbook,
}

impl UsageOption {
    /// Whether Discord asks the bot for suggestions as this option is
    /// typed: incident and runbook ids. Not for an option with choices
    /// (Discord refuses both on one option).
    pub fn completes(&self) -> Option<Completes> {
        if !self.choices.is_empty() || self.flag {
            return None;
        }
        match self.name.as_str() {
            "id" | "incident-id" => Some(Completes::Incident),
            "runbook-id" => Some(Completes::Runbook),
            _ => None,
        }
    }
}

/// What the option `name` of the help table's command `path` completes.
pub fn completion(path: &str, name: &str) -> Option<Completes> {
    usage_options(path)
        .into_iter()
        .find(|o| o.name == name)
        .and_then(|o| o.completes())
}

/// The options of the help table's command `path` (`"incident declare"`),
/// in the order its usage line has them; empty for anything else.
pub fn usage_options(path: &str) -> Vec<UsageOption> {
    commands::COMMANDS
        .iter()
        .find(|(name, _, _)| *name == path)
        .map(|(name, usage, _)| parse_usage(name, usage))
        .unwrap_or_default()
}

/// Splits `usage` into words (a bracketed word with a space, like
/// `[--sev P1|P2|P3]`, is one), drops the command's own words, and reads
/// each of the rest as an option.
fn parse_usage(name: &str, usage: &str) -> Vec<UsageOption> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut depth = 0i32;
    for c in usage.chars() {
        match c {
            '[' | '<' => depth += 1,
            ']' | '>' => depth -= 1,
            _ => {}
        }
        if c == ' ' && depth <= 0 {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    let skip = 1 + name.split(' ').count().saturating_sub(1);
    words
        .into_iter()
        .skip(skip)
        .filter_map(|w| option_of(&w))
        .collect()
}

fn option_of(word: &str) -> Option<UsageOption> {
    let (inner, required) =
        if let Some(i) = word.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
            (i, false)
        } else if let Some(i) = word.strip_prefix('<').and_then(|w| w.strip_suffix('>')) {
            (i, true)
        } else {
            (word, true)
        };
    let (flag, spelled) = match inner.strip_prefix("--") {
        Some(rest) => (true, rest.split(' ').next().unwrap_or(rest)),
        None => (false, inner),
    };
    let value = if flag {
        inner.split_once(' ').map_or("", |(_, v)| v)
    } else {
        inner
    };
    let alternatives: Vec<&str> = value.split('|').collect();
    let choices = if alternatives.len() > 1 && !value.contains('@') {
        alternatives.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    let name = if flag {
        spelled.to_string()
    } else if !choices.is_empty() {
        choice_name(&choices).to_string()
    } else if spelled.contains('=') {
        "params".to_string()
    } else {
        spelled
            .split('|')
            .next()
            .unwrap_or(spelled)
            .trim_end_matches("...")
            .trim_start_matches('@')
            .to_lowercase()
    };
    let name: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .take(32)
        .collect();
    (!name.is_empty()).then(|| UsageOption {
        name,
        word: word.to_string(),
        required,
        flag,
        choices,
    })
}

/// A name for a word that is only a list of values.
fn choice_name(choices: &[String]) -> &'static str {
    let has = |v: &str| choices.iter().any(|c| c == v);
    if has("P1") {
        "severity"
    } else if has("json") {
        "format"
    } else if has("resolved") {
        "status"
    } else {
        "which"
    }
}

fn description(text: &str) -> String {
    crate::text::clip(text, DESCRIPTION_CHARS).into_owned()
}

fn option_description(o: &UsageOption) -> String {
    match (o.name.as_str(), o.completes()) {
        ("id", _) => "incident, e.g. INC-42; leave out in its thread or channel".into(),
        (_, Some(Completes::Incident)) => "incident, e.g. INC-42".into(),
        (_, Some(Completes::Runbook)) => "runbook id; type to search the runbooks".into(),
        _ => description(&o.word),
    }
}

/// The options of `path` as Discord's, required ones first (Discord
/// requires that; [`super::interactions::command_line`] puts them back in
/// the usage line's order).
fn options(path: &str) -> Vec<CreateCommandOption> {
    let mut all = usage_options(path);
    all.sort_by_key(|o| !o.required);
    all.iter()
        .map(|o| {
            let mut option =
                CreateCommandOption::new(CommandOptionType::String, &o.name, option_description(o))
                    .required(o.required)
                    .set_autocomplete(o.completes().is_some());
            for c in &o.choices {
                option = option.add_string_choice(c, c);
            }
            option
        })
        .collect()
}

/// One command as registered, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub name: String,
    pub subcommands: usize,
}

/// Every slash command, from the help table: a group's commands as its
/// subcommands, the rest as commands of their own.
pub fn commands() -> (Vec<CreateCommand>, Vec<Registered>) {
    let mut out = Vec::new();
    let mut summary = Vec::new();
    for (group, _, group_description) in commands::COMMAND_GROUPS {
        let mut command = CreateCommand::new(*group).description(description(group_description));
        let mut n = 0;
        for (name, _, desc) in commands::COMMANDS {
            let Some(sub) = name.strip_prefix(group).and_then(|s| s.strip_prefix(' ')) else {
                continue;
            };
            let mut option =
                CreateCommandOption::new(CommandOptionType::SubCommand, sub, description(desc));
            for o in options(name) {
                option = option.add_sub_option(o);
            }
            command = command.add_option(option);
            n += 1;
        }
        out.push(command);
        summary.push(Registered {
            name: group.to_string(),
            subcommands: n,
        });
    }
    for (name, _, desc) in commands::COMMANDS {
        if name.contains(' ') {
            continue;
        }
        let command = CreateCommand::new(*name)
            .description(description(desc))
            .set_options(options(name));
        out.push(command);
        summary.push(Registered {
            name: name.to_string(),
            subcommands: 0,
        });
    }
    (out, summary)
}

/// Overwrites the guild's commands with [`commands`]; the summary of what
/// was registered, or why Discord refused (status and message).
pub async fn register(discord: &Discord, guild_id: u64) -> Result<String, String> {
    let (list, summary) = commands();
    GuildId::new(guild_id)
        .set_commands(discord.http().clone(), list)
        .await
        .map_err(|e| refused(&e))?;
    let names: Vec<String> = summary
        .iter()
        .map(|r| match r.subcommands {
            0 => format!("/{}", r.name),
            n => format!("/{} ({n} subcommands)", r.name),
        })
        .collect();
    Ok(format!(
        "registered {} commands for guild {guild_id}: {}",
        summary.len(),
        names.join(", ")
    ))
}

/// What Discord said, without the request (which carries no token, but
/// the message is all an operator needs).
fn refused(e: &serenity::Error) -> String {
    use serenity::http::HttpError;
    match e {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(r)) => {
            let mut text = format!(
                "Discord refused the commands: {} {}",
                r.status_code, r.error.message
            );
            if r.error.code != 0 {
                text.push_str(&format!(" (code {})", r.error.code));
            }
            for err in &r.error.errors {
                text.push_str(&format!("; {}: {}", err.path, err.message));
            }
            text
        }
        other => format!("Discord could not be reached to register the commands: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn valid_name(name: &str) -> bool {
        (1..=32).contains(&name.chars().count())
            && name
                .chars()
                .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
    }

    fn valid_description(d: &str) -> bool {
        (1..=DESCRIPTION_CHARS).contains(&d.chars().count())
    }

    fn check_options(where_: &str, options: &[Value]) {
        let mut optional_seen = false;
        for o in options {
            let name = o["name"].as_str().unwrap_or_default();
            assert!(valid_name(name), "{where_}: option {name:?}");
            let d = o["description"].as_str().unwrap_or_default();
            assert!(valid_description(d), "{where_} {name}: {d:?}");
            let required = o["required"].as_bool().unwrap_or(false);
            assert!(
                !(required && optional_seen),
                "{where_}: required {name} after an optional option"
            );
            optional_seen |= !required;
        }
    }

    #[test]
    fn every_help_table_command_is_registered_with_valid_names_and_ordered_options() {
        let (list, summary) = commands();
        let json: Vec<Value> = list
            .iter()
            .map(|c| serde_json::to_value(c).expect("json"))
            .collect();
        assert_eq!(json.len(), summary.len());
        for (name, usage, _) in commands::COMMANDS {
            let mut words = name.split(' ');
            let top = words.next().unwrap_or_default();
            let command = json
                .iter()
                .find(|c| c["name"] == *top)
                .unwrap_or_else(|| panic!("no /{top}"));
            assert!(valid_name(top));
            assert!(valid_description(
                command["description"].as_str().unwrap_or_default()
            ));
            let empty = Vec::new();
            let options = match words.next() {
                Some(sub) => {
                    let subs = command["options"].as_array().unwrap_or(&empty);
                    let s = subs
                        .iter()
                        .find(|o| o["name"] == sub && o["type"] == 1)
                        .unwrap_or_else(|| panic!("no /{name}"));
                    assert!(valid_name(sub));
                    assert!(valid_description(
                        s["description"].as_str().unwrap_or_default()
                    ));
                    s["options"].as_array().cloned().unwrap_or_default()
                }
                None => command["options"].as_array().cloned().unwrap_or_default(),
            };
            check_options(name, &options);
            // Every word of the usage line after the command is an option.
            assert_eq!(options.len(), usage_options(name).len(), "{usage}");
        }
        assert_eq!(
            summary
                .iter()
                .find(|r| r.name == "incident")
                .map(|r| r.subcommands),
            Some(11)
        );
    }

    #[test]
    fn incident_and_runbook_ids_complete_and_nothing_with_choices_does() {
        assert_eq!(completion("incident ack", "id"), Some(Completes::Incident));
        assert_eq!(
            completion("runbook run", "runbook-id"),
            Some(Completes::Runbook)
        );
        assert_eq!(
            completion("runbook run", "incident-id"),
            Some(Completes::Incident)
        );
        assert_eq!(completion("incident sev", "severity"), None);
        assert_eq!(completion("incident declare", "title"), None);
        assert_eq!(completion("incident ack", "nothing"), None);
        // As registered: autocomplete, never beside choices.
        let (list, _) = commands();
        let json = serde_json::to_value(&list).expect("json");
        let mut marked = 0;
        let mut stack: Vec<&Value> = json.as_array().into_iter().flatten().collect();
        while let Some(v) = stack.pop() {
            for o in v["options"].as_array().into_iter().flatten() {
                stack.push(o);
                if o["autocomplete"] == true {
                    marked += 1;
                    assert!(
                        o.get("choices")
                            .is_none_or(|c| c.as_array().is_none_or(|c| c.is_empty())),
                        "{o}"
                    );
                }
            }
        }
        // Every `[ID]` of the help table, plus the runbook ids.
        let ids = commands::COMMANDS
            .iter()
            .map(|(_, usage, _)| usage.matches("ID]").count() + usage.matches("ID>").count())
            .sum::<usize>();
        assert_eq!(marked, ids - 1, "all ids but ACTION-ID");
    }

    #[test]
    fn usage_words_become_the_options_the_interactions_read_back() {
        let declare = usage_options("incident declare");
        assert_eq!(declare.len(), 2);
        assert_eq!(
            (declare[0].name.as_str(), declare[0].required),
            ("title", true)
        );
        assert_eq!(declare[1].name, "sev");
        assert!(declare[1].flag && !declare[1].required);
        assert_eq!(declare[1].choices, ["P1", "P2", "P3"]);

        let propose: Vec<String> = usage_options("action propose")
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(propose, ["id", "action-id", "params"]);
        let page: Vec<String> = usage_options("page").into_iter().map(|o| o.name).collect();
        assert_eq!(page, ["who", "message"]);
        let sev = usage_options("incident sev");
        assert_eq!(sev[1].name, "severity");
        assert!(sev[1].required && !sev[1].flag);
        let followup: Vec<String> = usage_options("incident followup")
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(followup, ["id", "text", "owner", "due"]);
    }
}
