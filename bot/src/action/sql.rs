//! `sql`: one write statement against a configured PostgreSQL target, in a
//! transaction rolled back if it touches more rows than `max_rows`.

use serde::{Deserialize, Serialize};

use super::{Env, Outcome, Vars};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SqlAction {
    /// A `[targets.NAME]` of kind `postgres` (a role that may write).
    pub target: String,
    /// One statement: `UPDATE`, `INSERT` or `DELETE`. Placeholders become
    /// bind parameters, never text pasted into the SQL.
    pub statement: String,
    /// More rows touched than this and the transaction is rolled back.
    pub max_rows: u64,
}

/// The statement, rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlPlan {
    pub target: String,
    pub statement: String,
    pub binds: Vec<String>,
    pub max_rows: u64,
}

impl SqlPlan {
    pub fn describe(&self) -> String {
        format!("(sql on {})", self.target)
    }
}

pub fn prepare(_spec: &SqlAction, _vars: &Vars, _env: &Env) -> Result<SqlPlan, String> {
    Err("sql actions are not built yet".into())
}

pub async fn execute(_plan: &SqlPlan, _env: &Env, _key: &str) -> Outcome {
    super::not_built("sql")
}
