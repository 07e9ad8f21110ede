//! Email pages over SMTP (lettre, on tokio and rustls).
//!
//! `smtp_url` is lettre's connection URL: `smtps://user:pass@host:465`
//! (TLS from the start), `smtp://user:pass@host:587?tls=required`
//! (STARTTLS), or `smtp://host:25` (plain, for a relay on the same host).
//! It holds the password, so it never appears in a message: errors name
//! the host only, and anything the server says is scrubbed of the
//! password before it is shown.
//!
//! One mail per page, plain text, subject `[P1] INC-7: title`. Its
//! `Message-ID` is derived from the page id, so a page sent again after a
//! retry is recognisably the same mail.

use std::fmt;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{PageMessage, PagerError, Sent, headline, scrub};
use crate::config::escalation::EmailPagerSettings;
use crate::escalation::Contact;

/// `[pagers.email]`, ready to send.
pub(super) struct EmailPager {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// `smtp at mail.example.com:465`: how messages name the server.
    far: String,
    /// The whole URL and its password (as written and decoded), replaced
    /// in anything the server or lettre says before it is shown.
    secrets: Vec<SecretString>,
    /// The bound of one whole send (connect, TLS, AUTH, the message).
    timeout: Duration,
}

// lettre's transport would print its settings; only the host is shown.
impl fmt::Debug for EmailPager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailPager")
            .field("far", &self.far)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl EmailPager {
    /// The pager of `[pagers.email]`, `smtp_url` being its secret.
    pub(super) fn build(
        settings: &EmailPagerSettings,
        smtp_url: &SecretString,
        timeout: Duration,
    ) -> Result<EmailPager, PagerError> {
        let raw = smtp_url.expose_secret();
        let mut secrets = vec![smtp_url.clone()];
        let url = Url::parse(raw).map_err(|e| {
            PagerError::permanent(format!("pagers.email.smtp_url is not a URL: {e}"))
        })?;
        if let Some(password) = url.password() {
            secrets.push(SecretString::from(password.to_string()));
            if let Ok(decoded) = percent_decode(password) {
                secrets.push(SecretString::from(decoded));
            }
        }
        let far = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("smtp at {host}:{port}"),
            (Some(host), None) => format!("smtp at {host}"),
            (None, _) => {
                return Err(PagerError::permanent("pagers.email.smtp_url names no host"));
            }
        };
        let secret_refs: Vec<&SecretString> = secrets.iter().collect();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(raw)
            .map_err(|e| {
                PagerError::permanent(scrub(&format!("pagers.email.smtp_url: {e}"), &secret_refs))
            })?
            .timeout(Some(timeout))
            .build();
        let from = settings
            .from
            .as_deref()
            .ok_or_else(|| PagerError::permanent("pagers.email.from is required"))?;
        let from: Mailbox = from.parse().map_err(|e| {
            PagerError::permanent(format!(
                "pagers.email.from {from:?} is not a mail address: {e}"
            ))
        })?;
        Ok(EmailPager {
            transport,
            from,
            far,
            secrets,
            timeout,
        })
    }

    /// Mails `msg` to `contact`'s address. The receipt is the server's
    /// final answer (`250 2.0.0 Ok: queued as 4Bc…`).
    pub(super) async fn send(
        &self,
        contact: &Contact,
        msg: &PageMessage,
    ) -> Result<Sent, PagerError> {
        let secrets: Vec<&SecretString> = self.secrets.iter().collect();
        let address = contact.addresses.email.as_deref().ok_or_else(|| {
            PagerError::permanent(format!("contact {} has no email address", contact.id))
        })?;
        let to = address
            .trim()
            .parse()
            .map(|address| Mailbox::new(Some(contact.name.clone()), address))
            .map_err(|e| {
                PagerError::permanent(format!(
                    "contact {}'s email {address:?} is not a mail address: {e}",
                    contact.id
                ))
            })?;
        let mail = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(headline(msg))
            .message_id(Some(message_id(msg.page_id, &self.from)))
            .header(ContentType::TEXT_PLAIN)
            .body(msg.text.clone())
            .map_err(|e| PagerError::permanent(format!("the page's mail: {e}")))?;
        let answer = tokio::time::timeout(self.timeout, self.transport.send(mail))
            .await
            .map_err(|_| {
                PagerError::retryable(format!("{}: timed out after {:?}", self.far, self.timeout))
            })?;
        match answer {
            Ok(response) => {
                let text: Vec<&str> = response.message().collect();
                Ok(Sent {
                    receipt: scrub(&format!("{} {}", response.code(), text.join(" ")), &secrets),
                })
            }
            Err(e) => Err(classify(&self.far, &e, &secrets)),
        }
    }
}

/// `<firstline-page-42@example.com>`: the same for every send of one page,
/// in the sender's domain (as RFC 5322 suggests for uniqueness).
fn message_id(page_id: i64, from: &Mailbox) -> String {
    format!("<firstline-page-{page_id}@{}>", from.email.domain())
}

/// A lettre failure as a [`PagerError`]: a 5xx reply or a client-side
/// refusal (no AUTH mechanism in common, a bad envelope) is final; a 4xx
/// reply, a refused or dropped connection, a TLS failure or a timeout may
/// pass.
fn classify(
    far: &str,
    e: &lettre::transport::smtp::Error,
    secrets: &[&SecretString],
) -> PagerError {
    let said = std::error::Error::source(e)
        .map(ToString::to_string)
        .unwrap_or_default();
    let message = match e.status() {
        Some(code) if said.is_empty() => format!("{far} answered {code}"),
        Some(code) => format!("{far} answered {code}: {said}"),
        None if e.is_timeout() => format!("{far}: timed out"),
        // `connection error: Connection refused (os error 111)`, `tls
        // error: …`, `internal client error: No compatible authentication
        // mechanism was found`.
        None => {
            let mut what = e.to_string();
            if let Some(first) = what.get(..1) {
                what.replace_range(..1, &first.to_lowercase());
            }
            format!("{far}: {what}")
        }
    };
    let message = scrub(&message, secrets);
    if e.is_permanent() || e.is_client() {
        PagerError::permanent(message)
    } else {
        PagerError::retryable(message)
    }
}

/// `%40` as `@`: lettre decodes the URL's password before AUTH, so the
/// decoded form is what a server might echo.
fn percent_decode(text: &str) -> Result<String, std::str::Utf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|e| e.utf8_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percent_encoded_password_is_decoded_the_way_lettre_decodes_it() {
        assert_eq!(percent_decode("p%40ss%2Fw0rd").as_deref(), Ok("p@ss/w0rd"));
        assert_eq!(percent_decode("100%").as_deref(), Ok("100%"));
    }

    #[test]
    fn the_message_id_is_the_same_for_every_send_of_one_page() {
        let from: Mailbox = "Firstline <pager@example.com>".parse().expect("a mailbox");
        assert_eq!(message_id(42, &from), "<firstline-page-42@example.com>");
    }
}
