//! Webhook pages: a signed JSON POST to `[pagers.webhook] url`, for
//! receivers people write themselves (a phone tree, a home-grown pager).
//!
//! # What a receiver gets
//!
//! `POST {url}` with `Content-Type: application/json` and this body (one
//! per page and contact):
//!
//! ```json
//! {
//!   "page_id": 42,
//!   "incident": "INC-7",
//!   "title": "checkout 5xx above 5%",
//!   "severity": "P1",
//!   "text": "What is wrong and how to acknowledge, in a few lines",
//!   "dedup_key": "firstline-INC-7",
//!   "contact": {"id": "tech_lead", "name": "Ann", "email": "ann@example.com", "phone": "+33612345678"}
//! }
//! ```
//!
//! `contact.email` and `contact.phone` are `null` when the contact has
//! none. The headers:
//!
//! - `X-Firstline-Signature: sha256=<hex>`: HMAC-SHA256, keyed with
//!   `hmac_secret`, of the exact bytes of the body. Compute it over the
//!   raw body before parsing it, compare in constant time, and refuse the
//!   request if it differs.
//! - `X-Firstline-Page-Id: 42`: the same as `page_id`. A page that is sent
//!   again (after a timeout or a 5xx) keeps its id: treat a repeat as
//!   already handled and answer 2xx.
//!
//! Any 2xx means delivered. A 429 (with `Retry-After` in seconds), a 5xx,
//! or no answer within the timeout means "try again later"; any other
//! 4xx is final and firstline pages the contact's next channel. Keep the
//! body of a refusal short: its first few hundred characters go into the
//! incident's timeline.

use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::Sha256;
use url::Url;

use super::{PageMessage, PagerError, Sent, far_side, parse_url, post, refused};
use crate::config::escalation::WebhookPagerSettings;
use crate::escalation::Contact;

/// The header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Firstline-Signature";
/// The header carrying the page's id, stable across retries.
pub const PAGE_ID_HEADER: &str = "X-Firstline-Page-Id";

/// The JSON body of a webhook page (see the module doc), in its field
/// order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookBody<'a> {
    /// The page's id; a repeat of a page has the same one.
    pub page_id: i64,
    /// `INC-7`.
    pub incident: &'a str,
    /// The incident's title.
    pub title: &'a str,
    /// `P1`, `P2` or `P3`.
    pub severity: &'a str,
    /// What is wrong and how to acknowledge, in a few lines of plain text.
    pub text: &'a str,
    /// Stable per incident (`firstline-INC-7`), for receivers that group
    /// pages by incident.
    pub dedup_key: &'a str,
    /// Who is paged.
    pub contact: WebhookContact<'a>,
}

/// The person a webhook page is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookContact<'a> {
    /// Their key in the configuration (`tech_lead`).
    pub id: &'a str,
    /// Their name as people call them.
    pub name: &'a str,
    /// Their mail address, if configured.
    pub email: Option<&'a str>,
    /// Their phone number as configured, if any.
    pub phone: Option<&'a str>,
}

impl<'a> WebhookBody<'a> {
    /// The body for `msg` to `contact`.
    pub fn new(contact: &'a Contact, msg: &'a PageMessage) -> WebhookBody<'a> {
        WebhookBody {
            page_id: msg.page_id,
            incident: &msg.incident,
            title: &msg.title,
            severity: msg.severity.as_str(),
            text: &msg.text,
            dedup_key: &msg.dedup_key,
            contact: WebhookContact {
                id: &contact.id,
                name: &contact.name,
                email: contact.addresses.email.as_deref(),
                phone: contact.addresses.phone.as_deref(),
            },
        }
    }
}

/// `[pagers.webhook]`, ready to send.
pub(super) struct WebhookPager {
    client: reqwest::Client,
    /// Used as configured; never shown (its path or query may hold a
    /// token).
    url: Url,
    hmac_secret: SecretString,
    /// `webhook at hooks.example.com`.
    far: String,
    timeout: Duration,
}

// The URL's path or query may hold a token: only the host is shown.
impl std::fmt::Debug for WebhookPager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookPager")
            .field("far", &self.far)
            .finish_non_exhaustive()
    }
}

impl WebhookPager {
    /// The pager of `[pagers.webhook]` with its signing secret.
    pub(super) fn build(
        settings: &WebhookPagerSettings,
        hmac_secret: &SecretString,
        client: reqwest::Client,
        timeout: Duration,
    ) -> Result<WebhookPager, PagerError> {
        let url = settings
            .url
            .as_deref()
            .ok_or_else(|| PagerError::permanent("pagers.webhook.url is required"))?;
        let url = parse_url("pagers.webhook.url", url)?;
        Ok(WebhookPager {
            client,
            far: far_side("webhook", &url),
            url,
            hmac_secret: hmac_secret.clone(),
            timeout,
        })
    }

    /// POSTs the page, signed; the receipt is the receiver's status
    /// (`200 OK`).
    pub(super) async fn send(
        &self,
        contact: &Contact,
        msg: &PageMessage,
    ) -> Result<Sent, PagerError> {
        let secrets = [&self.hmac_secret];
        let body = serde_json::to_vec(&WebhookBody::new(contact, msg))
            .map_err(|e| PagerError::permanent(format!("the webhook body: {e}")))?;
        let signature = sign(self.hmac_secret.expose_secret().as_bytes(), &body);
        let request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(PAGE_ID_HEADER, msg.page_id.to_string())
            .body(body);
        let answer = post(&self.far, request, self.timeout, &secrets).await?;
        if answer.status.is_success() {
            return Ok(Sent {
                receipt: answer.status.to_string(),
            });
        }
        Err(refused(&self.far, &answer, &answer.body, &secrets))
    }
}

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `body`).
fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length; the error case cannot happen.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
