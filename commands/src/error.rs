//! The one error a malformed command produces.

use std::fmt;

/// Why a command could not be understood, with what to type instead.
///
/// Every platform shows it to the person who typed the command, usually an
/// on-call engineer in a hurry, so it carries the three things they need: which
/// command went wrong, what exactly was wrong, and the correct usage. The
/// fields are public so a platform can lay them out its own way (a Slack block,
/// a Discord embed); [`fmt::Display`] gives a plain-text rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The command as written in the help table, without the slash, e.g.
    /// `"incident sev"`, or just `"incident"` when the subcommand itself was
    /// missing or unknown.
    pub command: String,
    /// What is wrong, lower-case, no trailing period, quoting what was typed,
    /// e.g. `expected a severity P1, P2 or P3, got "P7"`.
    pub message: String,
    /// The command's usage line from the help table, e.g.
    /// `/incident sev [ID] P1|P2|P3`.
    pub usage: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}\nusage: {}",
            self.command, self.message, self.usage
        )
    }
}

impl std::error::Error for ParseError {}
