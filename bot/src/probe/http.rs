//! The `http` probe. See [`HttpProbe`] for the data it observes.
//!
//! This file also holds the HTTP plumbing the `metrics` and `prometheus`
//! probes share: one client, header assembly (secrets marked sensitive and
//! never echoed), URL joining, a capped body read and error wording.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, StatusCode, Url};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Observation, ProbeError, Target, TargetSettings};
use crate::text::trim_lines;

/// `kind = "http"`: a read of an HTTP endpoint (seed 000's summary API,
/// seed 003's `/health`, seed 004's Execution Logs API).
///
/// Data: `{"status": 200, "body": <JSON, or the text when not JSON>,
/// "attempts": 1, "elapsed_ms": 12}`. With `expect_status` set (a health
/// check), a service that never answers (refused, timed out) is observed
/// as `{"status": 0, "reachable": false, "error": "…"}`: that is the
/// failure such a check looks for. Without it, no answer is an error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// An `http` target; the path is appended to its `base_url`.
    pub target: String,
    /// `GET` (default) or `HEAD`: probes only read.
    #[serde(default = "default_method")]
    pub method: String,
    pub path: String,
    /// Query parameters (rendered, then URL-encoded).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Extra headers on top of the target's.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Tries until the status is the expected one (seed 003: 10 attempts).
    #[serde(default = "one")]
    pub attempts: u32,
    /// Wait between attempts (seed 003: 5000).
    #[serde(default)]
    pub spacing_ms: u64,
    /// The status that ends the retries; any 2xx when not set.
    #[serde(default)]
    pub expect_status: Option<u16>,
}

fn default_method() -> String {
    "GET".into()
}

fn one() -> u32 {
    1
}

/// The most of a body the http probe reads; a larger body is malformed.
pub(crate) const HTTP_BODY_CAP: usize = 1024 * 1024;

/// Evidence limits (see [`Observation::evidence`]).
pub(crate) const EVIDENCE_LINES: usize = 20;
pub(crate) const EVIDENCE_CHARS: usize = 2000;

/// Observes `p` on `target`.
pub async fn observe(
    p: &HttpProbe,
    target: &Target,
    timeout: Duration,
) -> Result<Observation, ProbeError> {
    let name = &target.name;
    let method = match p.method.trim().to_ascii_uppercase().as_str() {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        other => {
            return Err(ProbeError::Failed(
                name.clone(),
                format!("method {other} is not allowed: probes only read (GET or HEAD)"),
            ));
        }
    };
    let (base_url, target_headers) = match &target.settings {
        TargetSettings::Http {
            base_url, headers, ..
        } => (base_url, headers),
        other => {
            return Err(ProbeError::Config(
                name.clone(),
                format!("the http probe needs an http target, not {}", other.kind()),
            ));
        }
    };
    let mut url = parse_url(name, &join_url(base_url, &p.path))?;
    if !p.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &p.query {
            pairs.append_pair(k, v);
        }
    }
    let headers = header_map(target, target_headers, &p.headers)?;
    let client = shared_client(target)?;

    let attempts = p.attempts.max(1);
    let started = Instant::now();
    let mut made = 0u32;
    let mut last: Option<(StatusCode, Vec<u8>)> = None;
    let mut last_error: Option<String> = None;
    let mut all_timed_out = true;
    for attempt in 1..=attempts {
        if attempt > 1 && p.spacing_ms > 0 {
            tokio::time::sleep(Duration::from_millis(p.spacing_ms)).await;
        }
        made = attempt;
        let request = client
            .request(method.clone(), url.clone())
            .headers(headers.clone())
            .timeout(timeout);
        match fetch(request, HTTP_BODY_CAP).await {
            Ok((status, body)) => {
                all_timed_out = false;
                let done = match p.expect_status {
                    Some(want) => status.as_u16() == want,
                    None => status.is_success(),
                };
                last = Some((status, body));
                if done {
                    break;
                }
            }
            Err(FetchError::TooLarge) => {
                return Err(ProbeError::Malformed(
                    name.clone(),
                    format!(
                        "{method} {} answered a body over {} bytes",
                        display_url(&url),
                        HTTP_BODY_CAP
                    ),
                ));
            }
            Err(FetchError::Http(e)) => {
                if !e.is_timeout() {
                    all_timed_out = false;
                }
                last_error = Some(describe_error(&e));
            }
        }
    }
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);

    let Some((status, raw)) = last else {
        let reason = if all_timed_out {
            format!("no answer within {timeout:?}")
        } else {
            last_error.unwrap_or_else(|| "no answer".into())
        };
        let tried = format!(
            "{method} {} ({made} attempt{})",
            display_url(&url),
            if made == 1 { "" } else { "s" }
        );
        // A health check (expect_status set) is asking whether the service
        // answers: no answer is the failure it checks, observed as status 0.
        if p.expect_status.is_some() {
            return Ok(Observation {
                data: json!({
                    "status": 0,
                    "reachable": false,
                    "body": null,
                    "error": reason,
                    "attempts": made,
                    "elapsed_ms": elapsed_ms,
                }),
                evidence: trim_lines(
                    &format!("no answer: {tried}: {reason}"),
                    EVIDENCE_LINES,
                    EVIDENCE_CHARS,
                ),
            });
        }
        if all_timed_out {
            return Err(ProbeError::Timeout(name.clone(), timeout));
        }
        return Err(ProbeError::Unreachable(
            name.clone(),
            format!("{tried}: {reason}"),
        ));
    };

    let text = redact(&String::from_utf8_lossy(&raw), target);
    let body = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => v,
        Err(_) => serde_json::Value::String(text.clone()),
    };
    let mut evidence = status_line(status);
    if made > 1 {
        evidence.push_str(&format!(" (attempt {made} of {attempts})"));
    }
    // JSON keeps its own key order, one member a line, trimmed by size.
    let shown = match &body {
        serde_json::Value::String(s) => s.clone(),
        _ => crate::text::json_lines(&text)
            .map(|lines| lines.join("\n"))
            .unwrap_or_else(|| text.clone()),
    };
    if !shown.trim().is_empty() {
        evidence.push('\n');
        evidence.push_str(&shown);
    }
    Ok(Observation {
        data: json!({
            "status": status.as_u16(),
            "reachable": true,
            "body": body,
            "attempts": made,
            "elapsed_ms": elapsed_ms,
        }),
        evidence: trim_lines(&evidence, EVIDENCE_LINES, EVIDENCE_CHARS),
    })
}

/// `HTTP 200 OK`.
pub(crate) fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// `base` and `path` with exactly one slash between them.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let path = path.trim();
    if path.is_empty() {
        base.to_string()
    } else if path.starts_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    }
}

pub(crate) fn parse_url(target: &str, url: &str) -> Result<Url, ProbeError> {
    Url::parse(url)
        .map_err(|e| ProbeError::Config(target.to_string(), format!("bad URL {url:?}: {e}")))
}

/// The URL for messages: without user info and query.
pub(crate) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// The target's headers, its resolved secret headers (marked sensitive),
/// then `extra`; a later one replaces an earlier one of the same name.
/// Errors name the header, never a secret value.
pub(crate) fn header_map(
    target: &Target,
    target_headers: &BTreeMap<String, String>,
    extra: &BTreeMap<String, String>,
) -> Result<HeaderMap, ProbeError> {
    let bad = |what: String| ProbeError::Config(target.name.clone(), what);
    let mut map = HeaderMap::new();
    map.insert(
        reqwest::header::USER_AGENT,
        HeaderValue::from_static(concat!("firstline/", env!("CARGO_PKG_VERSION"), " probe")),
    );
    let plain = |map: &mut HeaderMap, headers: &BTreeMap<String, String>| {
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| bad(format!("bad header name {k:?}")))?;
            let value =
                HeaderValue::from_str(v).map_err(|_| bad(format!("bad value for header {k}")))?;
            map.insert(name, value);
        }
        Ok::<(), ProbeError>(())
    };
    plain(&mut map, target_headers)?;
    for (k, secret) in &target.secret_headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| bad(format!("bad header name {k:?}")))?;
        let mut value = HeaderValue::from_str(secret.expose_secret()).map_err(|_| {
            bad(format!(
                "the secret for header {k} is not a valid header value"
            ))
        })?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    plain(&mut map, extra)?;
    Ok(map)
}

/// Replaces the target's secret values in `text` (a server that echoes a
/// key must not put it in chat). Very short secrets are left alone: they
/// would mangle ordinary text.
pub(crate) fn redact(text: &str, target: &Target) -> String {
    let mut out = text.to_string();
    let secrets = target
        .secret_headers
        .values()
        .chain(target.password.iter())
        .map(|s| s.expose_secret())
        .filter(|s| s.len() >= 6);
    for secret in secrets {
        if out.contains(secret) {
            out = out.replace(secret, "[redacted]");
        }
    }
    out
}

/// A client for one probe run: rustls with the process's crypto provider,
/// redirects followed only within the same origin (so headers such as API
/// keys never travel to another host), timeouts set per request. Not
/// shared between runs: a pooled connection belongs to the runtime that
/// opened it, and tests (and a CLI) run probes on several runtimes.
/// The target's client, built once (Client is a cheap handle to a pool).
fn shared_client(target: &Target) -> Result<Client, ProbeError> {
    if let Some(c) = target.http_client.get() {
        return Ok(c.clone());
    }
    let c = client(&target.name)?;
    Ok(target.http_client.get_or_init(|| c).clone())
}

pub(crate) fn client(target: &str) -> Result<Client, ProbeError> {
    // The app installs ring at start; a library caller (a test) may not
    // have, and reqwest without a provider panics.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if attempt.previous().len() > 5 || !same_origin {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    Client::builder()
        .redirect(policy)
        .build()
        .map_err(|e| ProbeError::Failed(target.to_string(), format!("HTTP client: {e}")))
}

pub(crate) enum FetchError {
    Http(reqwest::Error),
    TooLarge,
}

/// Sends `request` and reads at most `cap` bytes of the body.
pub(crate) async fn fetch(
    request: reqwest::RequestBuilder,
    cap: usize,
) -> Result<(StatusCode, Vec<u8>), FetchError> {
    let mut response = request.send().await.map_err(FetchError::Http)?;
    let status = response.status();
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(FetchError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(FetchError::Http)? {
        if body.len() + chunk.len() > cap {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// One GET of `url` for the `metrics` and `prometheus` probes, mapping
/// transport errors to [`ProbeError`]s.
pub(crate) async fn get_once(
    target: &Target,
    url: &Url,
    headers: HeaderMap,
    timeout: Duration,
    cap: usize,
) -> Result<(StatusCode, Vec<u8>), ProbeError> {
    let name = &target.name;
    let client = shared_client(target)?;
    let request = client.get(url.clone()).headers(headers).timeout(timeout);
    match fetch(request, cap).await {
        Ok(answer) => Ok(answer),
        Err(FetchError::TooLarge) => Err(ProbeError::Malformed(
            name.clone(),
            format!("GET {} answered a body over {cap} bytes", display_url(url)),
        )),
        Err(FetchError::Http(e)) if e.is_timeout() => {
            Err(ProbeError::Timeout(name.clone(), timeout))
        }
        Err(FetchError::Http(e)) => Err(ProbeError::Unreachable(
            name.clone(),
            format!("GET {}: {}", display_url(url), describe_error(&e)),
        )),
    }
}

/// The innermost cause of a reqwest error (`Connection refused (os error
/// 111)`), without the URL, which messages give on their own.
pub(crate) fn describe_error(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let inner = cause.to_string();
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("cannot connect: {inner}")
    } else if inner.is_empty() {
        e.to_string()
    } else {
        inner
    }
}
