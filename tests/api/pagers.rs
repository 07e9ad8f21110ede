//! The pagers (`firstline::pager::Pagers`) against loopback stand-ins for
//! their far sides (`fake_pagers`): what each channel sends, how each
//! failure is classified, and that no secret reaches an error message.
//! They call the library directly: the escalation engine that calls
//! `Pagers` in the server is tested on its own.

use std::time::{Duration, Instant};

use firstline::config::Pagers as PagerConfig;
use firstline::config::escalation::{
    EmailPagerSettings, PagerdutySettings, PhonePagerSettings, WebhookPagerSettings,
};
use firstline::domain::Severity;
use firstline::escalation::{Addresses, Availability, Contact, PageChannel};
use firstline::pager::{PageMessage, PagerError, PagerdutyAction, Pagers};
use secrecy::SecretString;
use serde_json::json;

use crate::fake_pagers::{Failure, FakePagerduty, FakeTwilio, SmtpSink, WebhookReceiver};
use crate::helpers::closed_address;

const TIMEOUT: Duration = Duration::from_secs(5);
const SMTP_PASSWORD: &str = "smtp-pa55word-xyz";
const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "twilio-auth-token-0123456789";
const ROUTING_KEY: &str = "R0123456789abcdef0123456789abcde";
const HMAC_SECRET: &str = "webhook-hmac-secret-42";
const HOOK_TOKEN: &str = "path-token-that-is-a-secret";

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn ann() -> Contact {
    Contact {
        id: "tech_lead".into(),
        name: "Ann Lee".into(),
        timezone: chrono_tz::UTC,
        availability: Availability::Always,
        business_hours: Vec::new(),
        addresses: Addresses {
            email: Some("ann@example.com".into()),
            phone: Some("+33 6 12-34-56-78".into()),
            ..Addresses::default()
        },
        page_via: vec![PageChannel::Email],
    }
}

fn page() -> PageMessage {
    PageMessage {
        page_id: 42,
        incident: "INC-7".into(),
        title: "checkout 5xx above 5% & rising".into(),
        severity: Severity::P1,
        text: "checkout-api answers 5xx to 12% of requests.\nAcknowledge: /ack INC-7".into(),
        dedup_key: "firstline-INC-7".into(),
    }
}

fn email_config(smtp_url: &str) -> PagerConfig {
    PagerConfig {
        email: Some((
            EmailPagerSettings {
                smtp_url: None,
                from: Some("Firstline <pager@firstline.example>".into()),
            },
            secret(smtp_url),
        )),
        ..PagerConfig::default()
    }
}

fn phone_config(api_url: &str, token: &str) -> PagerConfig {
    PagerConfig {
        phone: Some((
            PhonePagerSettings {
                account_sid: None,
                auth_token: None,
                from: Some("+1 555-0100".into()),
                api_url: api_url.into(),
            },
            secret(TWILIO_SID),
            secret(token),
        )),
        ..PagerConfig::default()
    }
}

fn pagerduty_config(api_url: &str, routing_key: &str) -> PagerConfig {
    PagerConfig {
        pagerduty: Some((
            PagerdutySettings {
                routing_key: None,
                webhook_secret: None,
                api_url: api_url.into(),
            },
            secret(routing_key),
        )),
        ..PagerConfig::default()
    }
}

fn webhook_config(url: &str, hmac_secret: &str) -> PagerConfig {
    PagerConfig {
        webhook: Some((
            WebhookPagerSettings {
                url: Some(url.into()),
                hmac_secret: None,
            },
            secret(hmac_secret),
        )),
        ..PagerConfig::default()
    }
}

fn pagers(config: &PagerConfig) -> Pagers {
    Pagers::build(config, TIMEOUT).expect("the pagers build")
}

/// The error is retryable or not as expected, and shows none of the secrets.
fn assert_failure(err: &PagerError, retryable: bool, secrets: &[&str]) {
    assert_eq!(err.retryable, retryable, "{err:?}");
    for s in secrets {
        assert!(!err.message.contains(s), "a secret in {:?}", err.message);
    }
}

const ALL_SECRETS: [&str; 6] = [
    SMTP_PASSWORD,
    TWILIO_SID,
    TWILIO_TOKEN,
    ROUTING_KEY,
    HMAC_SECRET,
    HOOK_TOKEN,
];

// ---------------------------------------------------------------------------
// Email
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_email_page_reaches_the_smtp_server_with_its_subject_text_and_a_message_id_from_the_page()
 {
    let sink = SmtpSink::start().await;
    let pagers = pagers(&email_config(&sink.url(Some(("firstline", SMTP_PASSWORD)))));

    let sent = pagers
        .send(PageChannel::Email, &ann(), &page())
        .await
        .expect("the mail is accepted");

    assert!(sent.receipt.starts_with("250"), "{sent:?}");
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(
        mail.auth
            .as_deref()
            .is_some_and(|a| a.starts_with("AUTH PLAIN")),
        "{mail:?}"
    );
    assert_eq!(mail.from, "pager@firstline.example");
    assert_eq!(mail.to, ["ann@example.com"]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("[P1] INC-7: checkout 5xx above 5% & rising")
    );
    assert_eq!(
        mail.header("Message-ID").as_deref(),
        Some("<firstline-page-42@firstline.example>")
    );
    assert!(
        mail.header("To")
            .is_some_and(|to| to.contains("ann@example.com"))
    );
    assert!(
        mail.body()
            .contains("checkout-api answers 5xx to 12% of requests."),
        "{}",
        mail.data
    );
    assert!(
        mail.body().contains("Acknowledge: /ack INC-7"),
        "{}",
        mail.data
    );
}

#[tokio::test]
async fn an_email_page_sent_twice_keeps_its_message_id_so_the_repeat_is_recognisable() {
    let sink = SmtpSink::start().await;
    let pagers = pagers(&email_config(&sink.url(None)));

    for _ in 0..2 {
        pagers
            .send(PageChannel::Email, &ann(), &page())
            .await
            .expect("the mail is accepted");
    }

    let ids: Vec<Option<String>> = sink
        .mails()
        .iter()
        .map(|m| m.header("Message-ID"))
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1]);
}

#[tokio::test]
async fn an_smtp_server_refusing_the_recipient_with_550_is_a_permanent_failure_naming_the_host_not_the_password()
 {
    let sink = SmtpSink::answering_rcpt(Some("550 5.1.1 no such user here")).await;
    let pagers = pagers(&email_config(&sink.url(Some(("firstline", SMTP_PASSWORD)))));

    let err = pagers
        .send(PageChannel::Email, &ann(), &page())
        .await
        .expect_err("the server refuses");

    assert_failure(&err, false, &ALL_SECRETS);
    assert!(err.message.contains("127.0.0.1"), "{}", err.message);
    assert!(err.message.contains("550"), "{}", err.message);
    assert!(err.message.contains("no such user"), "{}", err.message);
    assert!(sink.mails().is_empty());
}

#[tokio::test]
async fn an_smtp_server_answering_451_is_a_retryable_failure() {
    let sink = SmtpSink::answering_rcpt(Some("451 4.3.0 try again later")).await;
    let pagers = pagers(&email_config(&sink.url(Some(("firstline", SMTP_PASSWORD)))));

    let err = pagers
        .send(PageChannel::Email, &ann(), &page())
        .await
        .expect_err("the server defers");

    assert_failure(&err, true, &ALL_SECRETS);
    assert!(err.message.contains("451"), "{}", err.message);
}

#[tokio::test]
async fn an_unreachable_smtp_server_is_a_retryable_failure_naming_the_host_not_the_password() {
    let closed = closed_address().await;
    let pagers = pagers(&email_config(&format!(
        "smtp://firstline:{SMTP_PASSWORD}@{closed}"
    )));

    let err = pagers
        .send(PageChannel::Email, &ann(), &page())
        .await
        .expect_err("nothing listens");

    assert_failure(&err, true, &ALL_SECRETS);
    assert!(err.message.contains(&closed), "{}", err.message);
}

#[tokio::test]
async fn a_contact_without_an_email_address_is_a_permanent_failure() {
    let sink = SmtpSink::start().await;
    let pagers = pagers(&email_config(&sink.url(None)));
    let mut contact = ann();
    contact.addresses.email = None;

    let err = pagers
        .send(PageChannel::Email, &contact, &page())
        .await
        .expect_err("no address");

    assert_failure(&err, false, &[]);
    assert!(err.message.contains("tech_lead"), "{}", err.message);
}

// ---------------------------------------------------------------------------
// Phone (Twilio)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_sms_page_goes_to_twilio_with_basic_auth_and_the_number_in_e164() {
    let twilio = FakeTwilio::start(TWILIO_SID, TWILIO_TOKEN).await;
    let pagers = pagers(&phone_config(&twilio.url, TWILIO_TOKEN));

    let sent = pagers
        .send(PageChannel::PhoneSms, &ann(), &page())
        .await
        .expect("twilio accepts the message");

    assert!(sent.receipt.starts_with("SM"), "{sent:?}");
    let accepted = twilio.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].resource, "Messages.json");
    let form = &accepted[0].form;
    assert_eq!(form["To"], "+33612345678");
    assert_eq!(form["From"], "+15550100");
    assert!(
        form["Body"].starts_with("[P1] INC-7: checkout 5xx above 5% & rising\n"),
        "{form:?}"
    );
    assert!(form["Body"].contains("/ack INC-7"), "{form:?}");
}

#[tokio::test]
async fn a_call_page_sends_twiml_that_says_the_page_escaped_for_xml() {
    let twilio = FakeTwilio::start(TWILIO_SID, TWILIO_TOKEN).await;
    let pagers = pagers(&phone_config(&twilio.url, TWILIO_TOKEN));

    let sent = pagers
        .send(PageChannel::PhoneCall, &ann(), &page())
        .await
        .expect("twilio accepts the call");

    assert!(sent.receipt.starts_with("CA"), "{sent:?}");
    let accepted = twilio.accepted();
    assert_eq!(accepted[0].resource, "Calls.json");
    let twiml = &accepted[0].form["Twiml"];
    assert!(twiml.starts_with("<Response><Say>"), "{twiml}");
    assert!(twiml.ends_with("</Say></Response>"), "{twiml}");
    assert!(twiml.contains("INC-7"), "{twiml}");
    assert!(twiml.contains("5% &amp; rising"), "{twiml}");
    assert_eq!(accepted[0].form["To"], "+33612345678");
}

#[tokio::test]
async fn twilio_refusing_the_credentials_is_a_permanent_failure_without_the_token_or_the_sid() {
    let twilio = FakeTwilio::start(TWILIO_SID, TWILIO_TOKEN).await;
    let pagers = pagers(&phone_config(&twilio.url, "wrong-token-0123456789"));

    let err = pagers
        .send(PageChannel::PhoneSms, &ann(), &page())
        .await
        .expect_err("twilio refuses");

    assert_failure(
        &err,
        false,
        &[TWILIO_SID, TWILIO_TOKEN, "wrong-token-0123456789"],
    );
    assert!(
        err.message.contains("twilio at 127.0.0.1"),
        "{}",
        err.message
    );
    assert!(err.message.contains("401"), "{}", err.message);
    assert!(err.message.contains("Authenticate"), "{}", err.message);
    assert!(twilio.accepted().is_empty());
}

#[tokio::test]
async fn twilio_rate_limiting_is_retryable_after_the_time_it_asks_for_and_a_500_is_retryable() {
    let twilio = FakeTwilio::start(TWILIO_SID, TWILIO_TOKEN).await;
    let pagers = pagers(&phone_config(&twilio.url, TWILIO_TOKEN));
    twilio.fail_next(Failure {
        retry_after: Some(7),
        ..Failure::status(429)
    });
    twilio.fail_next(Failure::status(500));

    let limited = pagers
        .send(PageChannel::PhoneSms, &ann(), &page())
        .await
        .expect_err("rate limited");
    let failed = pagers
        .send(PageChannel::PhoneCall, &ann(), &page())
        .await
        .expect_err("server error");
    let then = pagers.send(PageChannel::PhoneSms, &ann(), &page()).await;

    assert_failure(&limited, true, &ALL_SECRETS);
    assert_eq!(limited.retry_after, Some(Duration::from_secs(7)));
    assert!(limited.message.contains("429"), "{}", limited.message);
    assert_failure(&failed, true, &ALL_SECRETS);
    assert!(failed.message.contains("500"), "{}", failed.message);
    assert!(then.is_ok(), "{then:?}");
}

#[tokio::test]
async fn a_contact_whose_phone_is_not_a_number_is_a_permanent_failure_before_anything_is_sent() {
    let twilio = FakeTwilio::start(TWILIO_SID, TWILIO_TOKEN).await;
    let pagers = pagers(&phone_config(&twilio.url, TWILIO_TOKEN));
    let mut contact = ann();
    contact.addresses.phone = Some("call the office".into());

    let err = pagers
        .send(PageChannel::PhoneSms, &contact, &page())
        .await
        .expect_err("not a number");

    assert_failure(&err, false, &[]);
    assert!(twilio.accepted().is_empty());
}

// ---------------------------------------------------------------------------
// PagerDuty
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_pagerduty_page_is_a_trigger_with_the_summary_severity_and_dedup_key() {
    let pd = FakePagerduty::start(ROUTING_KEY).await;
    let pagers = pagers(&pagerduty_config(&pd.url, ROUTING_KEY));

    let sent = pagers
        .send(PageChannel::Pagerduty, &ann(), &page())
        .await
        .expect("pagerduty enqueues it");

    assert!(pagers.has_pagerduty());
    assert_eq!(sent.receipt, "firstline-INC-7");
    assert_eq!(
        pd.accepted(),
        [json!({
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": "firstline-INC-7",
            "payload": {
                "summary": "[P1] INC-7: checkout 5xx above 5% & rising",
                "source": "firstline",
                "severity": "critical",
                "custom_details": {
                    "incident": "INC-7",
                    "text": "checkout-api answers 5xx to 12% of requests.\nAcknowledge: /ack INC-7",
                },
            },
        })]
    );
}

#[tokio::test]
async fn pagerduty_acknowledge_and_resolve_carry_the_incidents_dedup_key_and_no_payload() {
    let pd = FakePagerduty::start(ROUTING_KEY).await;
    let pagers = pagers(&pagerduty_config(&pd.url, ROUTING_KEY));
    let mut p3 = page();
    p3.severity = Severity::P3;

    pagers
        .pagerduty_event(PagerdutyAction::Trigger, &p3)
        .await
        .expect("trigger");
    pagers
        .pagerduty_event(PagerdutyAction::Acknowledge, &p3)
        .await
        .expect("acknowledge");
    pagers
        .pagerduty_event(PagerdutyAction::Resolve, &p3)
        .await
        .expect("resolve");

    let events = pd.accepted();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["payload"]["severity"], "warning");
    for (event, action) in events.iter().zip(["trigger", "acknowledge", "resolve"]) {
        assert_eq!(event["event_action"], action);
        assert_eq!(event["dedup_key"], "firstline-INC-7");
    }
    assert!(events[1].get("payload").is_none(), "{}", events[1]);
    assert!(events[2].get("payload").is_none(), "{}", events[2]);
}

#[tokio::test]
async fn pagerduty_refusing_the_event_is_permanent_and_quotes_its_errors_without_the_routing_key() {
    let pd = FakePagerduty::start("Ranother0000000000000000000000ab").await;
    let pagers = pagers(&pagerduty_config(&pd.url, ROUTING_KEY));

    let err = pagers
        .pagerduty_event(PagerdutyAction::Trigger, &page())
        .await
        .expect_err("unknown routing key");

    assert_failure(&err, false, &ALL_SECRETS);
    assert!(
        err.message.contains("pagerduty at 127.0.0.1"),
        "{}",
        err.message
    );
    assert!(err.message.contains("400"), "{}", err.message);
    assert!(
        err.message.contains("Invalid routing key"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn pagerduty_throttling_and_server_errors_are_retryable() {
    let pd = FakePagerduty::start(ROUTING_KEY).await;
    let pagers = pagers(&pagerduty_config(&pd.url, ROUTING_KEY));
    pd.fail_next(Failure {
        retry_after: Some(30),
        ..Failure::status(429)
    });
    pd.fail_next(Failure::status(502));

    let throttled = pagers
        .pagerduty_event(PagerdutyAction::Acknowledge, &page())
        .await
        .expect_err("throttled");
    let failed = pagers
        .pagerduty_event(PagerdutyAction::Acknowledge, &page())
        .await
        .expect_err("bad gateway");

    assert_failure(&throttled, true, &ALL_SECRETS);
    assert_eq!(throttled.retry_after, Some(Duration::from_secs(30)));
    assert_failure(&failed, true, &ALL_SECRETS);
    assert!(failed.message.contains("502"), "{}", failed.message);
    assert!(pd.accepted().is_empty());
}

// ---------------------------------------------------------------------------
// Webhook
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_webhook_page_is_signed_over_its_exact_body_and_carries_the_page_and_the_contact() {
    let hook = WebhookReceiver::start(HMAC_SECRET).await;
    let pagers = pagers(&webhook_config(&hook.hook_url(HOOK_TOKEN), HMAC_SECRET));

    let sent = pagers
        .send(PageChannel::Webhook, &ann(), &page())
        .await
        .expect("the receiver accepts the signature");

    assert_eq!(sent.receipt, "204 No Content");
    let accepted = hook.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(
        accepted[0].headers["x-firstline-page-id"].to_str().ok(),
        Some("42")
    );
    assert_eq!(
        accepted[0].body,
        json!({
            "page_id": 42,
            "incident": "INC-7",
            "title": "checkout 5xx above 5% & rising",
            "severity": "P1",
            "text": "checkout-api answers 5xx to 12% of requests.\nAcknowledge: /ack INC-7",
            "dedup_key": "firstline-INC-7",
            "contact": {
                "id": "tech_lead",
                "name": "Ann Lee",
                "email": "ann@example.com",
                "phone": "+33 6 12-34-56-78",
            },
        })
    );
}

#[tokio::test]
async fn a_webhook_signed_with_another_secret_is_refused_and_the_failure_is_permanent_without_secrets_or_path()
 {
    let hook = WebhookReceiver::start(HMAC_SECRET).await;
    let pagers = pagers(&webhook_config(
        &hook.hook_url(HOOK_TOKEN),
        "not-the-receivers-secret",
    ));

    let err = pagers
        .send(PageChannel::Webhook, &ann(), &page())
        .await
        .expect_err("the receiver refuses the signature");

    assert_failure(
        &err,
        false,
        &[
            HMAC_SECRET,
            "not-the-receivers-secret",
            HOOK_TOKEN,
            "/hooks/",
        ],
    );
    assert!(
        err.message.contains("webhook at 127.0.0.1"),
        "{}",
        err.message
    );
    assert!(err.message.contains("401"), "{}", err.message);
    assert!(
        err.message.contains("signature does not match"),
        "{}",
        err.message
    );
    assert!(hook.accepted().is_empty());
}

#[tokio::test]
async fn a_webhook_answering_503_or_429_is_retryable_and_404_is_permanent() {
    let hook = WebhookReceiver::start(HMAC_SECRET).await;
    let pagers = pagers(&webhook_config(&hook.hook_url(HOOK_TOKEN), HMAC_SECRET));
    hook.fail_next(Failure::status(503));
    hook.fail_next(Failure {
        retry_after: Some(2),
        ..Failure::status(429)
    });
    hook.fail_next(Failure::status(404));

    let mut errors = Vec::new();
    for _ in 0..3 {
        errors.push(
            pagers
                .send(PageChannel::Webhook, &ann(), &page())
                .await
                .expect_err("scripted failure"),
        );
    }

    assert_failure(&errors[0], true, &ALL_SECRETS);
    assert_failure(&errors[1], true, &ALL_SECRETS);
    assert_eq!(errors[1].retry_after, Some(Duration::from_secs(2)));
    assert_failure(&errors[2], false, &ALL_SECRETS);
    assert!(errors[2].message.contains("404"), "{}", errors[2].message);
}

#[tokio::test]
async fn a_webhook_that_does_not_answer_in_time_is_a_retryable_timeout() {
    let hook = WebhookReceiver::start(HMAC_SECRET).await;
    let config = webhook_config(&hook.hook_url(HOOK_TOKEN), HMAC_SECRET);
    let pagers = Pagers::build(&config, Duration::from_millis(300)).expect("the pagers build");
    hook.fail_next(Failure {
        delay: Some(Duration::from_secs(5)),
        ..Failure::status(200)
    });

    let started = Instant::now();
    let err = pagers
        .send(PageChannel::Webhook, &ann(), &page())
        .await
        .expect_err("times out");

    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_failure(&err, true, &ALL_SECRETS);
    assert!(err.message.contains("timed out"), "{}", err.message);
}

// ---------------------------------------------------------------------------
// Every HTTP channel, unreachable
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_unreachable_receiver_on_any_http_channel_is_a_retryable_failure_naming_its_host() {
    let closed = closed_address().await;
    let base = format!("http://{closed}");
    let config = PagerConfig {
        phone: phone_config(&base, TWILIO_TOKEN).phone,
        pagerduty: pagerduty_config(&base, ROUTING_KEY).pagerduty,
        webhook: webhook_config(&format!("{base}/hooks/{HOOK_TOKEN}"), HMAC_SECRET).webhook,
        ..PagerConfig::default()
    };
    let pagers = pagers(&config);

    for channel in [
        PageChannel::PhoneSms,
        PageChannel::PhoneCall,
        PageChannel::Pagerduty,
        PageChannel::Webhook,
    ] {
        let err = pagers
            .send(channel, &ann(), &page())
            .await
            .expect_err("nothing listens");

        assert_failure(&err, true, &ALL_SECRETS);
        assert!(
            err.message.contains(&closed),
            "{channel:?}: {}",
            err.message
        );
        assert!(
            !err.message.contains("/hooks/"),
            "{channel:?}: {}",
            err.message
        );
    }
}

// ---------------------------------------------------------------------------
// What the pagers do not do
// ---------------------------------------------------------------------------

#[tokio::test]
async fn chat_pages_and_unconfigured_channels_are_permanent_failures_that_say_why() {
    let pagers = pagers(&PagerConfig::default());

    let dm = pagers
        .send(PageChannel::ChatDm, &ann(), &page())
        .await
        .expect_err("chat is not a pager");
    let email = pagers
        .send(PageChannel::Email, &ann(), &page())
        .await
        .expect_err("not configured");
    let ack = pagers
        .pagerduty_event(PagerdutyAction::Acknowledge, &page())
        .await
        .expect_err("not configured");

    assert!(!pagers.has_pagerduty());
    assert_failure(&dm, false, &[]);
    assert!(dm.message.contains("chat platform"), "{}", dm.message);
    assert_failure(&email, false, &[]);
    assert!(
        email.message.contains("[pagers.email]"),
        "{}",
        email.message
    );
    assert_failure(&ack, false, &[]);
    assert!(
        ack.message.contains("[pagers.pagerduty]"),
        "{}",
        ack.message
    );
}

#[tokio::test]
async fn the_pagers_debug_output_shows_no_secret() {
    let sink = SmtpSink::start().await;
    let config = PagerConfig {
        email: email_config(&sink.url(Some(("firstline", SMTP_PASSWORD)))).email,
        phone: phone_config("https://api.twilio.com", TWILIO_TOKEN).phone,
        pagerduty: pagerduty_config("https://events.pagerduty.com", ROUTING_KEY).pagerduty,
        webhook: webhook_config(
            &format!("https://hooks.example.com/hooks/{HOOK_TOKEN}"),
            HMAC_SECRET,
        )
        .webhook,
        pagerduty_webhook: None,
    };

    let shown = format!("{:?}", pagers(&config));

    for s in ALL_SECRETS {
        assert!(!shown.contains(s), "{s} in {shown}");
    }
    assert!(shown.contains("api.twilio.com"), "{shown}");
}
