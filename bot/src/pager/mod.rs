//! Pagers: how a page leaves firstline other than through chat.
//!
//! One file per paging channel (`email`, `phone` for SMS and calls,
//! `pagerduty`, `webhook`), each built from its `[pagers.*]` section and
//! sending one [`PageMessage`] to one contact. Chat DMs and mentions go
//! through the `ChatPlatform` seam instead (see `escalation::pages`).
//!
//! Every pager is time-bounded, names the far side's answer in its error
//! (never a secret), and says whether trying again could help: the page
//! handler falls through to the contact's next channel on any failure and
//! retries the whole page later only when some failure was retryable.

mod email;
mod pagerduty;
mod phone;
pub mod webhook;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::Pagers as PagerConfig;
use crate::domain::Severity;
use crate::escalation::{Contact, PageChannel};

/// What a page says, whatever carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageMessage {
    /// The page's own id (its outbox id): stable across retries, so a
    /// receiver can drop a repeat (the webhook's `X-Firstline-Page-Id`,
    /// the mail's `Message-ID`).
    pub page_id: i64,
    /// `INC-7`.
    pub incident: String,
    /// The incident's title, one line.
    pub title: String,
    /// The incident's severity (PagerDuty's `severity`, the subject's `[P1]`).
    pub severity: Severity,
    /// What is wrong and how to acknowledge, in a few lines of plain text.
    pub text: String,
    /// Stable per incident (`firstline-INC-7`): PagerDuty's `dedup_key`,
    /// so the trigger, acknowledge and resolve of one incident are one
    /// PagerDuty incident.
    pub dedup_key: String,
}

/// What the far side answered to a page that went out, for the timeline
/// (a Twilio message SID, PagerDuty's dedup key, an SMTP reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// What identifies the delivery on the far side, for the timeline.
    pub receipt: String,
}

/// Why a page did not go out on one channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PagerError {
    /// Lower-case, names the channel's far side and what it answered;
    /// never a secret.
    pub message: String,
    /// Whether the same page on the same channel could succeed later
    /// (a 429, a 5xx, a refused connection), as opposed to a 400 or a
    /// channel that is not configured.
    pub retryable: bool,
    /// When the far side said when to come back.
    pub retry_after: Option<Duration>,
}

impl PagerError {
    /// A failure that trying again will not mend.
    pub fn permanent(message: impl Into<String>) -> PagerError {
        PagerError {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }

    /// A failure that may pass: the page is worth sending again later.
    pub fn retryable(message: impl Into<String>) -> PagerError {
        PagerError {
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }
}

/// PagerDuty's `event_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PagerdutyAction {
    Trigger,
    Acknowledge,
    Resolve,
}

impl PagerdutyAction {
    /// The spelling PagerDuty uses (and the timeline shows).
    pub fn as_str(self) -> &'static str {
        match self {
            PagerdutyAction::Trigger => "trigger",
            PagerdutyAction::Acknowledge => "acknowledge",
            PagerdutyAction::Resolve => "resolve",
        }
    }
}

/// The configured pagers. A channel whose section is absent answers every
/// page with a permanent error naming the missing section (`check-config`
/// already refuses a contact paged on it; this covers the rest).
#[derive(Debug, Default)]
pub struct Pagers {
    /// `[pagers.email]`: SMTP.
    email: Option<email::EmailPager>,
    /// `[pagers.phone]`: SMS and calls through Twilio's REST API.
    phone: Option<phone::PhonePager>,
    /// `[pagers.pagerduty]`: Events API v2.
    pagerduty: Option<pagerduty::PagerdutyPager>,
    /// `[pagers.webhook]`: a signed POST.
    webhook: Option<webhook::WebhookPager>,
}

impl Pagers {
    /// The pagers of `[pagers.*]`; each request is bounded by `timeout`.
    /// Fails (permanently) only on what `check-config` should have caught:
    /// a URL or an address that does not parse.
    pub fn build(config: &PagerConfig, timeout: Duration) -> Result<Pagers, PagerError> {
        // One HTTP client (one connection pool) for the HTTP pagers, made
        // only when one is configured.
        let mut shared: Option<reqwest::Client> = None;
        let mut client = || -> Result<reqwest::Client, PagerError> {
            if let Some(c) = &shared {
                return Ok(c.clone());
            }
            let c = http_client(timeout)?;
            shared = Some(c.clone());
            Ok(c)
        };
        let mut pagers = Pagers::default();
        if let Some((settings, url)) = &config.email {
            pagers.email = Some(email::EmailPager::build(settings, url, timeout)?);
        }
        if let Some((settings, sid, token)) = &config.phone {
            pagers.phone = Some(phone::PhonePager::build(
                settings,
                sid,
                token,
                client()?,
                timeout,
            )?);
        }
        if let Some((settings, key)) = &config.pagerduty {
            pagers.pagerduty = Some(pagerduty::PagerdutyPager::build(
                settings,
                key,
                client()?,
                timeout,
            )?);
        }
        if let Some((settings, secret)) = &config.webhook {
            pagers.webhook = Some(webhook::WebhookPager::build(
                settings,
                secret,
                client()?,
                timeout,
            )?);
        }
        Ok(pagers)
    }

    /// Sends `msg` to `contact` on `channel` (any channel but the two chat
    /// ones, which go through the chat platform).
    pub async fn send(
        &self,
        channel: PageChannel,
        contact: &Contact,
        msg: &PageMessage,
    ) -> Result<Sent, PagerError> {
        match channel {
            PageChannel::ChatDm | PageChannel::ChatMention => Err(PagerError::permanent(format!(
                "{} pages go through the chat platform, not the pagers",
                channel.as_str()
            ))),
            PageChannel::Email => configured(&self.email, "email")?.send(contact, msg).await,
            PageChannel::PhoneSms => {
                configured(&self.phone, "phone")?
                    .send(phone::Kind::Sms, contact, msg)
                    .await
            }
            PageChannel::PhoneCall => {
                configured(&self.phone, "phone")?
                    .send(phone::Kind::Call, contact, msg)
                    .await
            }
            PageChannel::Pagerduty => {
                configured(&self.pagerduty, "pagerduty")?
                    .event(PagerdutyAction::Trigger, msg)
                    .await
            }
            PageChannel::Webhook => {
                configured(&self.webhook, "webhook")?
                    .send(contact, msg)
                    .await
            }
        }
    }

    /// Whether `[pagers.pagerduty]` is configured (then every incident's
    /// acknowledgement and resolution are sent to it).
    pub fn has_pagerduty(&self) -> bool {
        self.pagerduty.is_some()
    }

    /// Sends an acknowledge or resolve (or trigger) event for the
    /// incident of `msg` to PagerDuty, keyed by `msg.dedup_key`.
    pub async fn pagerduty_event(
        &self,
        action: PagerdutyAction,
        msg: &PageMessage,
    ) -> Result<Sent, PagerError> {
        configured(&self.pagerduty, "pagerduty")?
            .event(action, msg)
            .await
    }
}

/// The pager of `[pagers.{section}]`, or the permanent error that it is
/// not configured.
fn configured<'a, T>(pager: &'a Option<T>, section: &str) -> Result<&'a T, PagerError> {
    pager
        .as_ref()
        .ok_or_else(|| PagerError::permanent(format!("[pagers.{section}] is not configured")))
}

/// `[P1] INC-7: disk full on db-1`: the mail subject, the SMS's first
/// line, PagerDuty's summary.
fn headline(msg: &PageMessage) -> String {
    format!("[{}] {}: {}", msg.severity, msg.incident, msg.title)
}

/// The longest far-side text quoted in an error message.
const QUOTE_CHARS: usize = 300;
/// The most of an HTTP answer's body read (for its error message or
/// receipt); the rest is not waited for.
const BODY_CAP: usize = 64 * 1024;
/// The longest `Retry-After` honoured: a far side asking for more is
/// asked again sooner.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `message` with every secret replaced by `[redacted]` and cut to a size
/// that fits a timeline line. Far sides sometimes echo what they were
/// sent (a routing key in a 400, a user name in an SMTP reply), so every
/// message built from their answers goes through here.
fn scrub(message: &str, secrets: &[&SecretString]) -> String {
    let mut out = message.trim().to_string();
    for secret in secrets {
        let secret = secret.expose_secret();
        // A secret of a character or two would blank out ordinary words;
        // no real password, token or key is that short.
        if secret.len() >= 4 && out.contains(secret) {
            out = out.replace(secret, "[redacted]");
        }
    }
    crate::text::clip(&out, QUOTE_CHARS).into_owned()
}

/// The one HTTP client of the phone, PagerDuty and webhook pagers: rustls
/// with the process's crypto provider, no redirects (a POST that is
/// redirected is a misconfigured URL, and the credentials must not follow
/// it), every request bounded by `timeout`.
fn http_client(timeout: Duration) -> Result<reqwest::Client, PagerError> {
    // The app installs ring at start; a library caller (a test) may not
    // have, and reqwest without a provider panics.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("firstline/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| PagerError::permanent(format!("pagers' HTTP client: {}", e.without_url())))
}

/// The far side of an HTTP pager as messages name it: `twilio at
/// api.twilio.com`, `webhook at 127.0.0.1:8080`. Host and port only: a
/// URL's path or query may carry a token.
fn far_side(what: &str, url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{what} at {host}:{port}"),
        (Some(host), None) => format!("{what} at {host}"),
        (None, _) => what.to_string(),
    }
}

/// `url` parsed, or the permanent error naming `key` (without the URL,
/// which may hold a token).
fn parse_url(key: &str, url: &str) -> Result<Url, PagerError> {
    match Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(u),
        Ok(_) => Err(PagerError::permanent(format!(
            "{key} is not an http(s) URL"
        ))),
        Err(e) => Err(PagerError::permanent(format!("{key} is not a URL: {e}"))),
    }
}

/// What an HTTP far side answered.
struct Answer {
    status: reqwest::StatusCode,
    /// `Retry-After` in seconds, when given (Twilio and PagerDuty send
    /// seconds; an HTTP date is ignored and the caller's backoff applies).
    retry_after: Option<Duration>,
    /// At most [`BODY_CAP`] bytes of the body, lossily decoded.
    body: String,
}

impl Answer {
    /// The body as JSON, if it is.
    fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// Sends `request` and reads its answer (at most [`BODY_CAP`] bytes of
/// body); a transport failure becomes a retryable error naming `far`.
async fn post(
    far: &str,
    request: reqwest::RequestBuilder,
    timeout: Duration,
    secrets: &[&SecretString],
) -> Result<Answer, PagerError> {
    let failed = |e: reqwest::Error| {
        PagerError::retryable(scrub(
            &format!("{far}: {}", describe_http_error(e, timeout)),
            secrets,
        ))
    };
    let mut response = request.send().await.map_err(failed)?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
    let mut body = Vec::new();
    while body.len() < BODY_CAP {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            // The status is what matters; a body cut short only shortens
            // the message.
            Err(_) => break,
        }
    }
    body.truncate(BODY_CAP);
    Ok(Answer {
        status,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A non-2xx answer as a [`PagerError`]: 408, 429 and 5xx are retryable
/// (with the far side's `Retry-After`), any other status is final.
/// `detail` is what the far side said, already picked out of its body.
fn refused(far: &str, answer: &Answer, detail: &str, secrets: &[&SecretString]) -> PagerError {
    let status = answer.status;
    let detail = detail.trim();
    let message = if detail.is_empty() {
        format!("{far} answered {status}")
    } else {
        format!("{far} answered {status}: {detail}")
    };
    let message = scrub(&message, secrets);
    let retryable = status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status.is_server_error();
    if retryable {
        PagerError {
            message,
            retryable: true,
            retry_after: answer.retry_after,
        }
    } else {
        PagerError::permanent(message)
    }
}

/// A reqwest failure in a few words, without its URL (which may carry a
/// token or an account id): `timed out after 10s`, `cannot connect:
/// Connection refused (os error 111)`.
fn describe_http_error(e: reqwest::Error, timeout: Duration) -> String {
    let e = e.without_url();
    let mut cause: &dyn std::error::Error = &e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let inner = cause.to_string();
    if e.is_timeout() {
        format!("timed out after {timeout:?}")
    } else if e.is_connect() {
        format!("cannot connect: {inner}")
    } else if inner.is_empty() {
        e.to_string()
    } else {
        inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_a_far_side_echoes_is_redacted_and_the_message_is_clipped() {
        let key = SecretString::from("R0123456789abcdef".to_string());
        let said = format!(
            "pagerduty at host answered 400 Bad Request: unknown key {key}",
            key = "R0123456789abcdef"
        );

        let clean = scrub(&said, &[&key]);

        assert_eq!(
            clean,
            "pagerduty at host answered 400 Bad Request: unknown key [redacted]"
        );
        assert_eq!(scrub(&"x".repeat(1000), &[]).chars().count(), QUOTE_CHARS);
    }

    #[test]
    fn far_sides_are_named_by_host_and_port_never_path_or_query() {
        let url = Url::parse("https://user:pw@hooks.example.com:8443/t/0ken?k=v").expect("a URL");
        assert_eq!(
            far_side("webhook", &url),
            "webhook at hooks.example.com:8443"
        );
        let url = Url::parse("https://events.pagerduty.com").expect("a URL");
        assert_eq!(
            far_side("pagerduty", &url),
            "pagerduty at events.pagerduty.com"
        );
    }

    #[test]
    fn a_pagers_url_that_does_not_parse_is_refused_without_being_quoted() {
        let err =
            parse_url("pagers.webhook.url", "hooks.example.com/s3cret").expect_err("no scheme");
        assert!(!err.retryable);
        assert!(!err.message.contains("s3cret"), "{}", err.message);
        assert!(
            err.message.starts_with("pagers.webhook.url"),
            "{}",
            err.message
        );
    }
}
