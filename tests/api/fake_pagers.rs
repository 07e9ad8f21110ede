//! Loopback stand-ins for the far sides of the pagers: an SMTP server, Twilio,
//! PagerDuty's Events API v2 and a webhook receiver. Each checks what it is
//! sent the way the real one would (credentials, required fields, the
//! signature), records what it accepted, and answers failures on demand.
//!
//! - [`SmtpSink`]: a few dozen lines of tokio speaking enough SMTP for
//!   lettre (greeting, EHLO with `AUTH PLAIN`, MAIL, RCPT, DATA, QUIT); a
//!   scripted reply to RCPT (a 550 or a 451) stands for a refusing server.
//! - [`FakeTwilio`]: `POST /2010-04-01/Accounts/{sid}/Messages.json` and
//!   `Calls.json`, basic auth, form fields; 201 `{"sid": …}`, Twilio's
//!   error bodies otherwise.
//! - [`FakePagerduty`]: `POST /v2/enqueue`, checks the event as the
//!   Events API v2 documents it; 202, or 400 with `errors`.
//! - [`WebhookReceiver`]: checks `X-Firstline-Signature` over the raw body
//!   with its own secret (the `hmac` crate, independent of the bot's code),
//!   401 when it differs.
//!
//! The HTTP fakes answer, in order, the statuses queued with `fail_next`
//! before answering normally again.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::helpers::serve;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A failure an HTTP fake answers instead of its normal answer.
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    pub status: u16,
    /// Sent as `Retry-After` (seconds).
    pub retry_after: Option<u64>,
    /// Hold the answer this long first (to outlast a timeout).
    pub delay: Option<Duration>,
}

impl Failure {
    pub fn status(status: u16) -> Failure {
        Failure {
            status,
            retry_after: None,
            delay: None,
        }
    }
}

/// The queued failures of one fake.
#[derive(Default)]
struct Script(Mutex<VecDeque<Failure>>);

impl Script {
    fn push(&self, f: Failure) {
        lock(&self.0).push_back(f);
    }

    /// The next failure to answer, waiting out its delay first.
    async fn next(&self) -> Option<Failure> {
        let f = lock(&self.0).pop_front()?;
        if let Some(d) = f.delay {
            tokio::time::sleep(d).await;
        }
        Some(f)
    }
}

fn with_retry_after(f: &Failure, response: Response) -> Response {
    let mut response = response;
    if let Some(s) = f.retry_after
        && let Ok(v) = s.to_string().parse()
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

// ---------------------------------------------------------------------------
// SMTP
// ---------------------------------------------------------------------------

/// One mail the sink accepted.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    /// The `AUTH` line, if the client authenticated.
    pub auth: Option<String>,
    /// The address of `MAIL FROM:<…>`.
    pub from: String,
    /// The addresses of `RCPT TO:<…>`.
    pub to: Vec<String>,
    /// The message as sent after `DATA`, headers and body, dot-unstuffed,
    /// lines joined with `\n`.
    pub data: String,
}

impl Mail {
    /// The value of header `name` (case-insensitive, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let (head, _) = self.data.split_once("\n\n")?;
        let mut value: Option<String> = None;
        let mut in_it = false;
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if in_it && let Some(v) = value.as_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                continue;
            }
            in_it = false;
            if let Some((key, v)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
                && value.is_none()
            {
                value = Some(v.trim().to_string());
                in_it = true;
            }
        }
        value
    }

    /// The body, after the blank line.
    pub fn body(&self) -> &str {
        self.data.split_once("\n\n").map_or("", |(_, b)| b)
    }
}

/// A loopback SMTP server that records mails.
pub struct SmtpSink {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    /// A sink accepting every mail.
    pub async fn start() -> SmtpSink {
        SmtpSink::answering_rcpt(None).await
    }

    /// A sink answering every `RCPT` with `reply` (`"550 5.1.1 no such
    /// user"`) when given.
    pub async fn answering_rcpt(reply: Option<&'static str>) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let mails = Arc::new(Mutex::new(Vec::new()));
        let recorded = mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let _ = smtp_session(stream, reply, recorded).await;
                });
            }
        });
        SmtpSink { addr, mails }
    }

    /// `smtp://127.0.0.1:PORT` (plain: no `tls` parameter, so lettre
    /// neither wraps nor upgrades the connection), with `user:pass@` when
    /// given.
    pub fn url(&self, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((user, pass)) => format!("smtp://{user}:{pass}@{}", self.addr),
            None => format!("smtp://{}", self.addr),
        }
    }

    pub fn mails(&self) -> Vec<Mail> {
        lock(&self.mails).clone()
    }
}

async fn smtp_session(
    stream: tokio::net::TcpStream,
    rcpt_reply: Option<&'static str>,
    mails: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 sink.test ESMTP fake\r\n").await?;
    let mut mail = Mail::default();
    let mut auth = None;
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-sink.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME".into()
        } else if upper.starts_with("HELO") {
            "250 sink.test".into()
        } else if upper.starts_with("AUTH") {
            auth = Some(line.clone());
            "235 2.7.0 authenticated".into()
        } else if upper.starts_with("MAIL FROM:") {
            mail = Mail {
                auth: auth.clone(),
                from: angle(&line),
                ..Mail::default()
            };
            "250 2.1.0 ok".into()
        } else if upper.starts_with("RCPT TO:") {
            match rcpt_reply {
                Some(reply) => reply.into(),
                None => {
                    mail.to.push(angle(&line));
                    "250 2.1.5 ok".into()
                }
            }
        } else if upper == "DATA" {
            write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = Vec::new();
            while let Some(l) = lines.next_line().await? {
                if l == "." {
                    break;
                }
                data.push(l.strip_prefix('.').map_or(l.clone(), str::to_string));
            }
            mail.data = data.join("\n");
            let mut all = lock(&mails);
            all.push(std::mem::take(&mut mail));
            format!("250 2.0.0 ok: queued as Q{}", all.len())
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 ok".into()
        } else {
            "502 5.5.2 not implemented".into()
        };
        write.write_all(reply.as_bytes()).await?;
        write.write_all(b"\r\n").await?;
    }
    Ok(())
}

/// `x@y` of `MAIL FROM:<x@y> BODY=8BITMIME`.
fn angle(line: &str) -> String {
    line.split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map_or(String::new(), |(inside, _)| inside.to_string())
}

// ---------------------------------------------------------------------------
// Twilio
// ---------------------------------------------------------------------------

/// One request Twilio accepted.
#[derive(Debug, Clone)]
pub struct TwilioRequest {
    /// `Messages.json` or `Calls.json`.
    pub resource: String,
    pub form: HashMap<String, String>,
}

pub struct FakeTwilio {
    pub url: String,
    state: Arc<TwilioState>,
}

struct TwilioState {
    sid: String,
    token: String,
    accepted: Mutex<Vec<TwilioRequest>>,
    script: Script,
}

impl FakeTwilio {
    /// A Twilio that knows one account, `sid` with `token`.
    pub async fn start(sid: &str, token: &str) -> FakeTwilio {
        let state = Arc::new(TwilioState {
            sid: sid.into(),
            token: token.into(),
            accepted: Mutex::new(Vec::new()),
            script: Script::default(),
        });
        let router = Router::new()
            .route("/2010-04-01/Accounts/{sid}/{resource}", post(twilio_create))
            .with_state(state.clone());
        FakeTwilio {
            url: serve(router).await,
            state,
        }
    }

    pub fn fail_next(&self, f: Failure) {
        self.state.script.push(f);
    }

    pub fn accepted(&self) -> Vec<TwilioRequest> {
        lock(&self.state.accepted).clone()
    }
}

fn twilio_error(status: u16, code: u32, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

async fn twilio_create(
    State(state): State<Arc<TwilioState>>,
    Path((sid, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", state.sid, state.token))
    );
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth != Some(expected.as_str()) {
        return twilio_error(401, 20003, "Authenticate");
    }
    if sid != state.sid {
        return twilio_error(404, 20404, "The requested resource was not found");
    }
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let content = match resource.as_str() {
        "Messages.json" => "Body",
        "Calls.json" => "Twiml",
        _ => return twilio_error(404, 20404, "The requested resource was not found"),
    };
    for field in ["To", "From", content] {
        if form.get(field).is_none_or(|v| v.is_empty()) {
            return twilio_error(400, 21604, &format!("A '{field}' parameter is required."));
        }
    }
    if let Some(f) = state.script.next().await {
        let answer = match f.status {
            429 => twilio_error(429, 20429, "Too Many Requests"),
            status => twilio_error(status, 20500, "Internal Server Error"),
        };
        return with_retry_after(&f, answer);
    }
    let mut accepted = lock(&state.accepted);
    accepted.push(TwilioRequest {
        resource: resource.clone(),
        form,
    });
    let prefix = if resource == "Calls.json" { "CA" } else { "SM" };
    let sid = format!("{prefix}{:032x}", accepted.len());
    (
        StatusCode::CREATED,
        axum::Json(json!({"sid": sid, "status": "queued"})),
    )
        .into_response()
}

// ---------------------------------------------------------------------------
// PagerDuty
// ---------------------------------------------------------------------------

pub struct FakePagerduty {
    pub url: String,
    state: Arc<PagerdutyState>,
}

struct PagerdutyState {
    routing_key: String,
    accepted: Mutex<Vec<Value>>,
    script: Script,
}

impl FakePagerduty {
    /// A PagerDuty with one integration, `routing_key`.
    pub async fn start(routing_key: &str) -> FakePagerduty {
        let state = Arc::new(PagerdutyState {
            routing_key: routing_key.into(),
            accepted: Mutex::new(Vec::new()),
            script: Script::default(),
        });
        let router = Router::new()
            .route("/v2/enqueue", post(pagerduty_enqueue))
            .with_state(state.clone());
        FakePagerduty {
            url: serve(router).await,
            state,
        }
    }

    pub fn fail_next(&self, f: Failure) {
        self.state.script.push(f);
    }

    /// The events accepted, as sent.
    pub fn accepted(&self) -> Vec<Value> {
        lock(&self.state.accepted).clone()
    }
}

fn invalid_event(errors: Vec<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": errors,
        })),
    )
        .into_response()
}

/// The Events API v2's checks, as its documentation lists them.
fn event_errors(event: &Value, routing_key: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if event["routing_key"].as_str() != Some(routing_key) {
        errors.push("Invalid routing key".to_string());
    }
    let action = event["event_action"].as_str().unwrap_or("");
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        errors.push("'event_action' must be trigger, acknowledge or resolve".into());
    }
    if event["dedup_key"].as_str().is_none_or(str::is_empty) && action != "trigger" {
        errors.push("'dedup_key' is required for acknowledge and resolve".into());
    }
    if action == "trigger" {
        let payload = &event["payload"];
        for field in ["summary", "source", "severity"] {
            if payload[field].as_str().is_none_or(str::is_empty) {
                errors.push(format!("'payload.{field}' is missing or blank"));
            }
        }
        let severity = payload["severity"].as_str().unwrap_or("");
        if !["critical", "error", "warning", "info"].contains(&severity) {
            errors.push("'payload.severity' must be critical, error, warning or info".into());
        }
    } else if !event["payload"].is_null() {
        errors.push(format!("a {action} takes no payload"));
    }
    errors
}

async fn pagerduty_enqueue(State(state): State<Arc<PagerdutyState>>, body: Bytes) -> Response {
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return invalid_event(vec!["body is not JSON".into()]);
    };
    let errors = event_errors(&event, &state.routing_key);
    if !errors.is_empty() {
        return invalid_event(errors);
    }
    if let Some(f) = state.script.next().await {
        let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = if f.status == 429 {
            json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly.  Please retry later."})
        } else {
            json!({"status": "error", "message": "Internal error (scripted)"})
        };
        let answer = (status, axum::Json(body)).into_response();
        return with_retry_after(&f, answer);
    }
    let dedup_key = event["dedup_key"]
        .as_str()
        .unwrap_or("generated-key")
        .to_string();
    lock(&state.accepted).push(event);
    (
        StatusCode::ACCEPTED,
        axum::Json(
            json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
        ),
    )
        .into_response()
}

// ---------------------------------------------------------------------------
// Webhook
// ---------------------------------------------------------------------------

/// One webhook request the receiver accepted.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: HeaderMap,
    /// The raw body, parsed.
    pub body: Value,
}

pub struct WebhookReceiver {
    /// `http://127.0.0.1:PORT`; pages go to [`WebhookReceiver::hook_url`].
    pub url: String,
    state: Arc<WebhookState>,
}

struct WebhookState {
    secret: String,
    accepted: Mutex<Vec<Delivery>>,
    script: Script,
}

impl WebhookReceiver {
    /// A receiver checking signatures with `secret`.
    pub async fn start(secret: &str) -> WebhookReceiver {
        let state = Arc::new(WebhookState {
            secret: secret.into(),
            accepted: Mutex::new(Vec::new()),
            script: Script::default(),
        });
        let router = Router::new()
            .route("/hooks/{token}", post(webhook_receive))
            .with_state(state.clone());
        WebhookReceiver {
            url: serve(router).await,
            state,
        }
    }

    /// The hook's URL, with `token` in its path the way hosted receivers
    /// put theirs.
    pub fn hook_url(&self, token: &str) -> String {
        format!("{}/hooks/{token}", self.url)
    }

    pub fn fail_next(&self, f: Failure) {
        self.state.script.push(f);
    }

    pub fn accepted(&self) -> Vec<Delivery> {
        lock(&self.state.accepted).clone()
    }
}

async fn webhook_receive(
    State(state): State<Arc<WebhookState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let given = headers
        .get("x-firstline-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|v| hex::decode(v).ok());
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(state.secret.as_bytes()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    mac.update(&body);
    // verify_slice compares in constant time.
    if given.is_none_or(|sig| mac.verify_slice(&sig).is_err()) {
        return (StatusCode::UNAUTHORIZED, "signature does not match").into_response();
    }
    if let Some(f) = state.script.next().await {
        let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return with_retry_after(&f, (status, "scripted failure").into_response());
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    lock(&state.accepted).push(Delivery { headers, body });
    StatusCode::NO_CONTENT.into_response()
}
