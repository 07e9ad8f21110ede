//! `http`: one request to a configured `[targets.*]` of kind `http` (its
//! `secret_headers` are sent and shown as `••••`).
//!
//! Redirects are not followed: an action's request goes where it was
//! approved to go, and a `3xx` is an answer like any other (not ok unless
//! listed in `expect_status`). The request carries `Idempotency-Key`, the
//! same for every retry of one approval.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use reqwest::{Client, Method, StatusCode, Url};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{Env, Outcome, Vars};
use crate::probe::http::{FetchError, describe_error, fetch, join_url};
use crate::probe::{Target, TargetSettings};
use crate::text::{clip, redact_url};

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
    /// The target's plain headers, then the action's (which win).
    pub headers: BTreeMap<String, String>,
    /// Names of the target's secret headers (values never stored here).
    pub secret_headers: Vec<String>,
    pub body: Option<String>,
    pub expect_status: Vec<u16>,
}

/// The most of a response body read; the rest is not waited for.
const BODY_CAP: usize = 256 * 1024;
/// Body characters shown in `describe`.
const DESCRIBE_BODY: usize = 500;
/// The header carrying the execution's idempotency key.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

impl HttpPlan {
    /// ```text
    /// POST http://127.0.0.1:8000/admin/restart
    /// X-Api-Key: ••••
    /// Content-Type: application/json
    /// Idempotency-Key: (one per approval)
    /// {"component": "worker"}
    /// expects 202
    /// ```
    pub fn describe(&self) -> String {
        let mut lines = vec![format!("{} {}", self.method, redact_url(&self.url))];
        lines.extend(self.secret_headers.iter().map(|h| format!("{h}: ••••")));
        lines.extend(self.headers.iter().map(|(k, v)| format!("{k}: {v}")));
        lines.push(format!("{IDEMPOTENCY_KEY}: (one per approval)"));
        if let Some(body) = &self.body {
            let body = body.trim();
            if !body.is_empty() {
                lines.push(clip(body, DESCRIBE_BODY).into_owned());
            }
        }
        lines.push(expects(&self.expect_status));
        lines.join("\n")
    }

    fn expected(&self, status: StatusCode) -> bool {
        if self.expect_status.is_empty() {
            status.is_success()
        } else {
            self.expect_status.contains(&status.as_u16())
        }
    }
}

/// `expects 202`, `expects 200 or 204`, `expects 2xx`.
fn expects(statuses: &[u16]) -> String {
    if statuses.is_empty() {
        return "expects 2xx".into();
    }
    let list: Vec<String> = statuses.iter().map(u16::to_string).collect();
    format!("expects {}", list.join(" or "))
}

pub fn prepare(spec: &HttpAction, vars: &Vars, env: &Env) -> Result<HttpPlan, String> {
    let target = http_target(env, &spec.target)?;
    let TargetSettings::Http {
        base_url, headers, ..
    } = &target.settings
    else {
        return Err(wrong_kind(target, "http"));
    };
    let method = spec.method.trim().to_ascii_uppercase();
    Method::from_bytes(method.as_bytes()).map_err(|_| format!("invalid method {method:?}"))?;

    let path = super::render(&spec.path, vars)?;
    let url = join_url(base_url, &path);
    let parsed = Url::parse(&url).map_err(|e| {
        format!(
            "target {:?}: bad URL {:?}: {e}",
            target.name,
            redact_url(&url)
        )
    })?;
    // A rendered value must not move the request to another host.
    let base =
        Url::parse(base_url).map_err(|e| format!("target {:?}: bad base_url: {e}", target.name))?;
    if parsed.origin() != base.origin() {
        return Err(format!(
            "path {path:?} leads away from target {:?} ({})",
            target.name,
            redact_url(&url)
        ));
    }

    let mut plain = headers.clone();
    for (name, template) in &spec.headers {
        if target
            .secret_headers
            .keys()
            .any(|s| s.eq_ignore_ascii_case(name))
        {
            return Err(format!(
                "header {name} is a secret header of target {:?}: it is sent from there, not from the action",
                target.name
            ));
        }
        if name.eq_ignore_ascii_case(IDEMPOTENCY_KEY) {
            return Err(format!(
                "header {IDEMPOTENCY_KEY} is set by firstline (one key per approval)"
            ));
        }
        let value = super::render(template, vars)?;
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("bad header name {name:?}"))?;
        HeaderValue::from_str(&value).map_err(|_| format!("bad value for header {name}"))?;
        plain.retain(|k, _| !k.eq_ignore_ascii_case(name));
        plain.insert(name.clone(), value);
    }
    let body = spec
        .body
        .as_deref()
        .map(|b| super::render(b, vars))
        .transpose()?;
    for s in &spec.expect_status {
        if !(100..=599).contains(s) {
            return Err(format!("expect_status {s} is not an HTTP status"));
        }
    }
    Ok(HttpPlan {
        target: target.name.clone(),
        method,
        url,
        headers: plain,
        secret_headers: target.secret_headers.keys().cloned().collect(),
        body,
        expect_status: spec.expect_status.clone(),
    })
}

pub async fn execute(plan: &HttpPlan, env: &Env, key: &str) -> Outcome {
    let target = match http_target(env, &plan.target) {
        Ok(t) => t,
        Err(m) => return refused(m),
    };
    let method = match Method::from_bytes(plan.method.as_bytes()) {
        Ok(m) => m,
        Err(_) => return refused(format!("invalid method {:?}", plan.method)),
    };
    let url = match Url::parse(&plan.url) {
        Ok(u) => u,
        Err(e) => return refused(format!("bad URL {:?}: {e}", redact_url(&plan.url))),
    };
    let mut headers = match header_map(target, &plan.headers) {
        Ok(h) => h,
        Err(m) => return refused(m),
    };
    match HeaderValue::from_str(key) {
        Ok(v) => {
            headers.insert(HeaderName::from_static("idempotency-key"), v);
        }
        Err(_) => return refused(format!("idempotency key {key:?} is not a header value")),
    }
    let client = match client() {
        Ok(c) => c,
        Err(m) => return refused(m),
    };
    let mut request = client.request(method, url).timeout(env.timeout);
    if let Some(body) = &plan.body {
        if !headers.contains_key(CONTENT_TYPE) {
            let kind = if serde_json::from_str::<serde_json::Value>(body).is_ok() {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
        }
        request = request.body(body.clone());
    }
    let request = request.headers(headers);

    let started = Instant::now();
    let answer = fetch(request, BODY_CAP).await;
    let ms = started.elapsed().as_millis();
    match answer {
        Ok((status, body)) => {
            let ok = plan.expected(status);
            let mut summary = format!("HTTP {} in {ms} ms", status.as_u16());
            if !ok {
                summary.push_str(&format!(", {}", expects(&plan.expect_status)));
            }
            Outcome {
                ok,
                summary,
                output: String::from_utf8_lossy(&body).trim().to_string(),
                retryable: !ok && retryable_status(status),
            }
        }
        Err(FetchError::TooLarge) => Outcome {
            // The request was answered: the status is unknown only because
            // the body was too large to keep.
            ok: false,
            summary: format!("the answer's body is over {BODY_CAP} bytes after {ms} ms"),
            output: String::new(),
            retryable: false,
        },
        Err(FetchError::Http(e)) => failed(&e, &plan.url, env.timeout),
    }
}

/// Statuses worth another try: the server is overloaded or down.
pub(super) fn retryable_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// A request that got no answer: a timeout or a refused connection may go
/// better next time; a request that could not be built will not.
pub(super) fn failed(e: &reqwest::Error, url: &str, timeout: Duration) -> Outcome {
    let shown = redact_url(url);
    let (summary, retryable) = if e.is_timeout() {
        (
            format!("no answer from {shown} within {} s", timeout.as_secs()),
            true,
        )
    } else if e.is_connect() || e.is_request() || e.is_body() {
        (format!("{shown}: {}", describe_error(e)), true)
    } else {
        (format!("{shown}: {}", describe_error(e)), false)
    };
    Outcome {
        ok: false,
        summary,
        output: String::new(),
        retryable,
    }
}

/// A failure no retry changes (the configuration or the plan is wrong).
pub(super) fn refused(summary: String) -> Outcome {
    Outcome {
        ok: false,
        summary,
        output: String::new(),
        retryable: false,
    }
}

/// The target named `name`, which must be of kind `http`.
pub(super) fn http_target<'a>(env: &'a Env, name: &str) -> Result<&'a Target, String> {
    let target = lookup(env, name)?;
    match target.settings {
        TargetSettings::Http { .. } => Ok(target),
        _ => Err(wrong_kind(target, "http")),
    }
}

/// The target named `name`, of any kind.
pub(super) fn lookup<'a>(env: &'a Env, name: &str) -> Result<&'a Target, String> {
    env.targets.get(name).ok_or_else(|| {
        let known: Vec<&str> = env.targets.keys().map(String::as_str).collect();
        if known.is_empty() {
            format!("unknown target {name:?}: no [targets] are configured")
        } else {
            format!(
                "unknown target {name:?}: configured are {}",
                known.join(", ")
            )
        }
    })
}

pub(super) fn wrong_kind(target: &Target, want: &str) -> String {
    format!(
        "target {:?} is of kind {}, not {want}",
        target.name,
        target.settings.kind()
    )
}

/// `plain` headers, then the target's secret ones (marked sensitive, so
/// they never appear in a `Debug` of the request). Errors name the header,
/// never a secret value.
pub(super) fn header_map(
    target: &Target,
    plain: &BTreeMap<String, String>,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    map.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("firstline/", env!("CARGO_PKG_VERSION"), " action")),
    );
    for (k, v) in plain {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("bad header name {k:?}"))?;
        let value = HeaderValue::from_str(v).map_err(|_| format!("bad value for header {k}"))?;
        map.insert(name, value);
    }
    for (k, secret) in &target.secret_headers {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("bad header name {k:?}"))?;
        let mut value = HeaderValue::from_str(secret.expose_secret()).map_err(|_| {
            format!(
                "the secret for header {k} of target {:?} is not a valid header value",
                target.name
            )
        })?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// A client for one execution that follows no redirect. Actions are rare;
/// a fresh client also keeps no connection across runtimes.
pub(super) fn client() -> Result<Client, String> {
    // The app installs ring at start; a library caller (a test) may not
    // have, and reqwest without a provider panics.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}
