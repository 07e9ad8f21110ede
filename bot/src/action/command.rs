//! `command`: an allowlisted program (`[actions.commands.NAME]`), run with
//! an argv, never through a shell.

use serde::{Deserialize, Serialize};

use super::{Env, Outcome, Vars};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandAction {
    /// A key of `[actions.commands]` in the configuration.
    pub command: String,
}

/// The argv, rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandPlan {
    pub command: String,
    pub argv: Vec<String>,
    pub workdir: Option<String>,
    /// Names of the environment variables set (values of secret ones are
    /// never stored here).
    pub env: Vec<String>,
}

impl CommandPlan {
    pub fn describe(&self) -> String {
        format!("(command {})", self.command)
    }
}

pub fn prepare(_spec: &CommandAction, _vars: &Vars, _env: &Env) -> Result<CommandPlan, String> {
    Err("command actions are not built yet".into())
}

pub async fn execute(_plan: &CommandPlan, _env: &Env, _key: &str) -> Outcome {
    super::not_built("command")
}
