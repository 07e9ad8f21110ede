//! `http`: one request to a configured `[targets.*]` of kind `http` (its
//! `secret_headers` are sent and shown as `••••`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Env, Outcome, Vars};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAction {
    /// A `[targets.NAME]` of kind `http`.
    pub target: String,
    /// `POST` by default.
    #[serde(default = "default_method")]
    pub method: String,
    /// Appended to the target's `base_url`.
    pub path: String,
    /// Plain headers (secret ones come from the target's `secret_headers`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body template (sent as is; JSON when it parses as JSON).
    #[serde(default)]
    pub body: Option<String>,
    /// Statuses that mean it worked; any 2xx when empty.
    #[serde(default)]
    pub expect_status: Vec<u16>,
}

fn default_method() -> String {
    "POST".into()
}

/// The request, rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpPlan {
    pub target: String,
    pub method: String,
    /// Full URL (credentials in it are never shown: see `describe`).
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// Names of the target's secret headers (values never stored here).
    pub secret_headers: Vec<String>,
    pub body: Option<String>,
    pub expect_status: Vec<u16>,
}

impl HttpPlan {
    pub fn describe(&self) -> String {
        todo_describe("http")
    }
}

pub fn prepare(_spec: &HttpAction, _vars: &Vars, _env: &Env) -> Result<HttpPlan, String> {
    Err("http actions are not built yet".into())
}

pub async fn execute(_plan: &HttpPlan, _env: &Env, _key: &str) -> Outcome {
    super::not_built("http")
}

fn todo_describe(kind: &str) -> String {
    format!("({kind} action)")
}
