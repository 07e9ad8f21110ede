//! SMS and voice calls through Twilio's REST API (or anything speaking its
//! shape, at `api_url`).
//!
//! - SMS: `POST {api_url}/2010-04-01/Accounts/{sid}/Messages.json`, form
//!   `To`, `From`, `Body`.
//! - Call: `POST {api_url}/2010-04-01/Accounts/{sid}/Calls.json`, form
//!   `To`, `From`, `Twiml` (`<Response><Say>…</Say></Response>`).
//!
//! Both with HTTP basic auth (account SID : auth token); Twilio answers
//! 201 with JSON whose `sid` is the receipt. A 429 (with its
//! `Retry-After`) or a 5xx may pass; any other 4xx is final and its
//! error names Twilio's `message` and `code`. The SID and the token never
//! appear in a message.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{PageMessage, PagerError, Sent, far_side, headline, parse_url, post, refused, scrub};
use crate::config::escalation::PhonePagerSettings;
use crate::escalation::Contact;

/// Twilio's limit on one message's `Body` (longer ones are refused).
const SMS_MAX_CHARS: usize = 1600;
/// What a call reads out, at most: about a minute of speech, and within
/// Twilio's 4000 characters of `Twiml` even if every character needed
/// escaping (`&quot;` is 6).
const SAY_MAX_CHARS: usize = 600;

/// Which of Twilio's resources a page goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Sms,
    Call,
}

/// `[pagers.phone]`, ready to send.
pub(super) struct PhonePager {
    client: reqwest::Client,
    /// `{api_url}/2010-04-01/Accounts/{sid}/`, ending in a slash so the
    /// resource joins onto it.
    account_url: Url,
    account_sid: SecretString,
    auth_token: SecretString,
    /// The number (or messaging service) pages come from.
    from: String,
    /// `twilio at api.twilio.com`.
    far: String,
    timeout: Duration,
}

// The account URL holds the SID: only the host is shown.
impl std::fmt::Debug for PhonePager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhonePager")
            .field("far", &self.far)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl PhonePager {
    /// The pager of `[pagers.phone]` with its account SID and auth token.
    pub(super) fn build(
        settings: &PhonePagerSettings,
        account_sid: &SecretString,
        auth_token: &SecretString,
        client: reqwest::Client,
        timeout: Duration,
    ) -> Result<PhonePager, PagerError> {
        let base = parse_url("pagers.phone.api_url", &settings.api_url)?;
        let far = far_side("twilio", &base);
        let mut account_url = base;
        account_url
            .path_segments_mut()
            .map_err(|()| PagerError::permanent("pagers.phone.api_url cannot take a path"))?
            .pop_if_empty()
            .extend(["2010-04-01", "Accounts", account_sid.expose_secret(), ""]);
        let from = settings
            .from
            .as_deref()
            .map(e164)
            .ok_or_else(|| PagerError::permanent("pagers.phone.from is required"))?;
        Ok(PhonePager {
            client,
            account_url,
            account_sid: account_sid.clone(),
            auth_token: auth_token.clone(),
            from,
            far,
            timeout,
        })
    }

    /// Texts or calls `contact` with `msg`; the receipt is Twilio's SID of
    /// the message or call (`SM…`, `CA…`).
    pub(super) async fn send(
        &self,
        kind: Kind,
        contact: &Contact,
        msg: &PageMessage,
    ) -> Result<Sent, PagerError> {
        let secrets = [&self.account_sid, &self.auth_token];
        let number = contact.addresses.phone.as_deref().ok_or_else(|| {
            PagerError::permanent(format!("contact {} has no phone number", contact.id))
        })?;
        let to = e164(number);
        if !is_e164(&to) {
            return Err(PagerError::permanent(format!(
                "contact {}'s phone {number:?} is not a number like +33612345678",
                contact.id
            )));
        }
        let (resource, content) = match kind {
            Kind::Sms => ("Messages.json", ("Body", sms_body(msg))),
            Kind::Call => ("Calls.json", ("Twiml", twiml(msg))),
        };
        let url = self
            .account_url
            .join(resource)
            .map_err(|e| PagerError::permanent(format!("{}: {e}", self.far)))?;
        let form = [
            ("To", to.as_str()),
            ("From", self.from.as_str()),
            (content.0, content.1.as_str()),
        ];
        // By hand: reqwest's `form` is behind a feature the rest of the
        // crate does not need.
        let form = serde_urlencoded::to_string(form)
            .map_err(|e| PagerError::permanent(format!("the form for {}: {e}", self.far)))?;
        let request = self
            .client
            .post(url)
            .basic_auth(
                self.account_sid.expose_secret(),
                Some(self.auth_token.expose_secret()),
            )
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form);
        let answer = post(&self.far, request, self.timeout, &secrets).await?;
        let json = answer.json();
        if answer.status.is_success() {
            let sid = json
                .as_ref()
                .and_then(|j| j["sid"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| answer.status.to_string());
            return Ok(Sent {
                receipt: scrub(&sid, &secrets),
            });
        }
        // Twilio's errors: {"code": 21211, "message": "The 'To' number …
        // is not a valid phone number.", "more_info": …, "status": 400}.
        let detail = match json.as_ref() {
            Some(j) => match (j["message"].as_str(), j["code"].as_i64()) {
                (Some(m), Some(code)) => format!("{m} (code {code})"),
                (Some(m), None) => m.to_string(),
                (None, _) => answer.body.clone(),
            },
            None => answer.body.clone(),
        };
        Err(refused(&self.far, &answer, &detail, &secrets))
    }
}

/// `+33 6 12-34-56-78` as `+33612345678`: what Twilio takes.
fn e164(number: &str) -> String {
    number
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect()
}

/// `+` then 2 to 15 digits.
fn is_e164(number: &str) -> bool {
    number
        .strip_prefix('+')
        .is_some_and(|d| (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// `[P1] INC-7: title` then the text, within one message's limit.
fn sms_body(msg: &PageMessage) -> String {
    let body = format!("{}\n{}", headline(msg), msg.text);
    crate::text::clip(&body, SMS_MAX_CHARS).into_owned()
}

/// The call's instructions: the page read out.
fn twiml(msg: &PageMessage) -> String {
    let said = format!(
        "Firstline page. Severity {}. Incident {}: {}. {}",
        msg.severity, msg.incident, msg.title, msg.text
    );
    let said = xml_escape(&crate::text::clip(&said, SAY_MAX_CHARS));
    format!("<Response><Say>{said}</Say></Response>")
}

/// Text as XML character data and attribute values.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0; a newline
            // is read as a pause anyway.
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Severity;

    fn msg(text: &str) -> PageMessage {
        PageMessage {
            page_id: 1,
            incident: "INC-7".into(),
            title: "db <primary> & replica down".into(),
            severity: Severity::P1,
            text: text.into(),
            dedup_key: "firstline-INC-7".into(),
        }
    }

    #[test]
    fn a_number_loses_its_spaces_and_dashes() {
        assert_eq!(e164("+33 6 12-34-56-78"), "+33612345678");
        assert!(is_e164("+33612345678"));
        assert!(!is_e164("0612345678"));
        assert!(!is_e164("+33 (6) 12"));
    }

    #[test]
    fn the_call_reads_the_page_escaped_for_xml() {
        let twiml = twiml(&msg("ack with /ack INC-7\nnow"));
        assert!(
            twiml.starts_with("<Response><Say>Firstline page. Severity P1."),
            "{twiml}"
        );
        assert!(
            twiml.contains("db &lt;primary&gt; &amp; replica down"),
            "{twiml}"
        );
        assert!(!twiml.contains('\n'), "{twiml}");
        assert!(twiml.ends_with("</Say></Response>"), "{twiml}");
    }

    #[test]
    fn a_long_page_fits_one_sms() {
        let body = sms_body(&msg(&"x".repeat(5000)));
        assert_eq!(body.chars().count(), SMS_MAX_CHARS);
        assert!(body.starts_with("[P1] INC-7: db <primary> & replica down\nxxx"));
    }
}
