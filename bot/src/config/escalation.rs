//! `[contacts.*]`, `[rotations.*]`, `[escalation.P1|P2|P3]` and
//! `[pagers.*]` as written, and their check: [`build`] turns them into the
//! validated [`Escalation`] model or names every mistake by its key
//! (`escalation.P1.steps[1].ack_within`; array positions count from 0), and
//! the caller adds its line.

use std::collections::{BTreeMap, BTreeSet};

use chrono_tz::Tz;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::SecretRef;
use crate::domain::Severity;
use crate::domain::time::Millis;
use crate::escalation::model::{
    Addresses, Availability, Contact, Escalation, Handoff, Override, PageChannel, Policy, Rotation,
    Step, Target, WeeklyWindow, default_ack_within_ms, parse_duration,
};

/// `[contacts.NAME]`: a person who can be paged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactSettings {
    /// How people call them; the key when not set.
    pub name: Option<String>,
    /// IANA zone their business hours are read in; `server.timezone` when
    /// not set.
    pub timezone: Option<String>,
    /// `"24/7"`, `"business_hours"` or `"on_call"`.
    /// Required; optional here so that a wrong value is one problem, not
    /// also a missing field.
    pub availability: Option<Availability>,
    /// For `business_hours`: `["Mon-Fri 09:00-18:00", …]` in their zone.
    #[serde(default)]
    pub business_hours: Vec<String>,
    /// Slack member id (`U0…`).
    pub slack: Option<String>,
    /// Discord user id.
    pub discord: Option<String>,
    /// Their name on the console platform; the key when not set.
    pub console: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Channels in order; `["chat_dm"]` when not set.
    pub page_via: Option<Vec<PageChannel>>,
}

/// `[rotations.NAME]`: people who take turns.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationSettings {
    /// Contact keys in turn order.
    #[serde(default)]
    pub members: Vec<String>,
    /// `"weekly Mon 10:00 Asia/Tokyo"` or `"daily 09:00 Europe/Paris"`
    /// (zone optional: `server.timezone`).
    pub handoff: Option<String>,
    /// `YYYY-MM-DD`: the first member's turn starts at the first hand-off
    /// on or after this day.
    pub start: Option<String>,
    #[serde(default)]
    pub overrides: Vec<OverrideSettings>,
}

/// `{ who, from, to }`: `who` on call over `[from, to)`, RFC 3339.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideSettings {
    pub who: String,
    pub from: String,
    pub to: String,
}

/// `[escalation.P1]`: a severity's policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    #[serde(default)]
    pub steps: Vec<StepSettings>,
    /// Runs of the whole policy after the first pass.
    #[serde(default)]
    pub repeat: u32,
}

/// `{ page = [...], ack_within = "5m" }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSettings {
    /// Contact keys, `rotation:NAME`, `assignee`, `channel`.
    #[serde(default)]
    pub page: Vec<String>,
    /// `"5m"`, `"1h"`…; seed 003's response time for the severity when
    /// not set (P1 5m, P2 15m, P3 1h).
    pub ack_within: Option<String>,
}

/// `[pagers.*]`: how pages leave firstline other than through chat.
/// Parsed and checked, then built into `pager::Pagers`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PagerSettings {
    pub email: Option<EmailPagerSettings>,
    pub phone: Option<PhonePagerSettings>,
    pub pagerduty: Option<PagerdutySettings>,
    pub webhook: Option<WebhookPagerSettings>,
}

/// `[pagers.email]`: SMTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailPagerSettings {
    /// `smtps://user:password@host` — a secret, by reference.
    pub smtp_url: Option<SecretRef>,
    pub from: Option<String>,
}

/// `[pagers.phone]`: SMS and calls through Twilio's REST API shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhonePagerSettings {
    pub account_sid: Option<SecretRef>,
    pub auth_token: Option<SecretRef>,
    pub from: Option<String>,
    #[serde(default = "default_twilio_url")]
    pub api_url: String,
}

/// `[pagers.pagerduty]`: Events API v2.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerdutySettings {
    pub routing_key: Option<SecretRef>,
    /// The signing secret of a PagerDuty V3 webhook subscription: with it,
    /// an acknowledgement in PagerDuty acknowledges the firstline incident
    /// (`POST /pagerduty/webhook`).
    #[serde(default)]
    pub webhook_secret: Option<SecretRef>,
    #[serde(default = "default_pagerduty_url")]
    pub api_url: String,
}

/// `[pagers.webhook]`: a POST signed with HMAC-SHA256.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookPagerSettings {
    pub url: Option<String>,
    pub hmac_secret: Option<SecretRef>,
}

fn default_twilio_url() -> String {
    "https://api.twilio.com".into()
}

fn default_pagerduty_url() -> String {
    "https://events.pagerduty.com".into()
}

/// `[pagers.*]` with their secrets read, for the pagers to come.
#[derive(Debug, Clone, Default)]
pub struct Pagers {
    pub email: Option<(EmailPagerSettings, SecretString)>,
    /// The settings, the account SID and the auth token.
    pub phone: Option<(PhonePagerSettings, SecretString, SecretString)>,
    pub pagerduty: Option<(PagerdutySettings, SecretString)>,
    pub webhook: Option<(WebhookPagerSettings, SecretString)>,
    /// `[pagers.pagerduty] webhook_secret`, read.
    pub pagerduty_webhook: Option<SecretString>,
}

/// Most repeats of a policy: beyond this a mistake (`repeat = 100`) would
/// page people all night.
pub const MAX_REPEAT: u32 = 10;
/// The longest `ack_within`.
const MAX_ACK_WITHIN_MS: i64 = 7 * 86_400_000;

/// The sections checked, every mistake passed to `err(key, message)`; the
/// model when there was none.
pub fn build(
    contacts: &BTreeMap<String, ContactSettings>,
    rotations: &BTreeMap<String, RotationSettings>,
    policies: &BTreeMap<String, PolicySettings>,
    server_zone: Tz,
    platform: &str,
    err: &mut impl FnMut(&str, String),
) -> Option<Escalation> {
    let mut ok = true;
    let mut fail = |key: &str, message: String| {
        ok = false;
        err(key, message);
    };
    let mut model = Escalation::default();

    for (id, c) in contacts {
        let key = format!("contacts.{id}");
        let timezone = match &c.timezone {
            None => server_zone,
            Some(z) => z.parse::<Tz>().unwrap_or_else(|_| {
                fail(
                    &format!("{key}.timezone"),
                    format!("{z:?} is not an IANA time zone such as Asia/Tokyo"),
                );
                server_zone
            }),
        };
        let mut business_hours = Vec::new();
        for (i, text) in c.business_hours.iter().enumerate() {
            match WeeklyWindow::parse(text) {
                Ok(w) => business_hours.push(w),
                Err(m) => fail(&format!("{key}.business_hours[{i}]"), m),
            }
        }
        let availability = c.availability.unwrap_or_else(|| {
            fail(
                &format!("{key}.availability"),
                "is required: \"24/7\", \"business_hours\" or \"on_call\"".into(),
            );
            Availability::Always
        });
        match availability {
            Availability::BusinessHours if c.business_hours.is_empty() => fail(
                &format!("{key}.availability"),
                "is business_hours but business_hours is empty: add e.g. business_hours = [\"Mon-Fri 09:00-18:00\"]".into(),
            ),
            Availability::BusinessHours => {}
            _ if !c.business_hours.is_empty() => fail(
                &format!("{key}.business_hours"),
                format!(
                    "is only read with availability = \"business_hours\" (this contact is {:?})",
                    availability.as_str()
                ),
            ),
            _ => {}
        }
        let addresses = Addresses {
            slack: c.slack.clone(),
            discord: c.discord.clone(),
            console: Some(c.console.clone().unwrap_or_else(|| id.clone())),
            email: c.email.clone(),
            phone: c.phone.clone(),
        };
        if let Some(e) = &c.email
            && !e.contains('@')
        {
            fail(
                &format!("{key}.email"),
                format!("{e:?} is not an email address"),
            );
        }
        if let Some(p) = &c.phone
            && !(p.starts_with('+')
                && p[1..]
                    .chars()
                    .all(|ch| ch.is_ascii_digit() || ch == '-' || ch == ' ')
                && p.chars().filter(char::is_ascii_digit).count() >= 6)
        {
            fail(
                &format!("{key}.phone"),
                format!("{p:?} is not an international number like +81-90-0000-0000"),
            );
        }
        let page_via = c
            .page_via
            .clone()
            .unwrap_or_else(|| vec![PageChannel::ChatDm]);
        if page_via.is_empty() {
            fail(
                &format!("{key}.page_via"),
                "is empty: this contact could never be paged; list channels such as [\"chat_dm\", \"email\"]".into(),
            );
        }
        let mut seen = BTreeSet::new();
        for ch in &page_via {
            if !seen.insert(*ch) {
                fail(
                    &format!("{key}.page_via"),
                    format!("lists {} twice", ch.as_str()),
                );
            }
            let missing = match ch {
                PageChannel::ChatDm | PageChannel::ChatMention => match platform {
                    "slack" if c.slack.is_none() => {
                        Some("a slack id (chat.platform is slack), e.g. slack = \"U0123ABCD\"")
                    }
                    "discord" if c.discord.is_none() => {
                        Some("a discord id (chat.platform is discord)")
                    }
                    _ => None,
                },
                PageChannel::Email if c.email.is_none() => Some("an email address (email = \"…\")"),
                PageChannel::PhoneSms | PageChannel::PhoneCall if c.phone.is_none() => {
                    Some("a phone number (phone = \"+…\")")
                }
                _ => None,
            };
            if let Some(what) = missing {
                fail(
                    &format!("{key}.page_via"),
                    format!(
                        "has {} but {id} has no address for it: add {what}",
                        ch.as_str()
                    ),
                );
            }
        }
        model.contacts.insert(
            id.clone(),
            Contact {
                id: id.clone(),
                name: c.name.clone().unwrap_or_else(|| id.clone()),
                timezone,
                availability,
                business_hours,
                addresses,
                page_via,
            },
        );
    }

    for (name, r) in rotations {
        let key = format!("rotations.{name}");
        if r.members.is_empty() {
            fail(
                &format!("{key}.members"),
                "is empty: list the contacts who take turns".into(),
            );
        }
        for (i, m) in r.members.iter().enumerate() {
            if !contacts.contains_key(m) {
                fail(&format!("{key}.members[{i}]"), unknown_contact(m, contacts));
            }
        }
        let handoff = match &r.handoff {
            Some(h) => Handoff::parse(h, server_zone).map_err(|m| {
                fail(&format!("{key}.handoff"), m);
            }),
            None => {
                fail(
                    &format!("{key}.handoff"),
                    "is required, e.g. handoff = \"weekly Mon 10:00 Asia/Tokyo\"".into(),
                );
                Err(())
            }
        };
        let start = match &r.start {
            None => Some(Rotation::DEFAULT_START),
            Some(s) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| {
                    fail(
                        &format!("{key}.start"),
                        format!("{s:?} is not a date like 2026-12-07"),
                    )
                })
                .ok(),
        };
        let mut overrides = Vec::new();
        for (i, o) in r.overrides.iter().enumerate() {
            let okey = format!("{key}.overrides[{i}]");
            if !contacts.contains_key(&o.who) {
                fail(&format!("{okey}.who"), unknown_contact(&o.who, contacts));
            }
            let instant = |field: &str, text: &str, fail: &mut dyn FnMut(&str, String)| {
                match chrono::DateTime::parse_from_rfc3339(text) {
                    Ok(dt) => Some(Millis(dt.timestamp_millis())),
                    Err(_) => {
                        fail(
                            &format!("{okey}.{field}"),
                            format!(
                                "{text:?} is not an RFC 3339 time like 2026-12-24T18:00:00+09:00"
                            ),
                        );
                        None
                    }
                }
            };
            let from = instant("from", &o.from, &mut fail);
            let to = instant("to", &o.to, &mut fail);
            if let (Some(from), Some(to)) = (from, to) {
                if to <= from {
                    fail(
                        &format!("{okey}.to"),
                        format!("{} is not after from ({})", o.to, o.from),
                    );
                } else {
                    overrides.push(Override {
                        who: o.who.clone(),
                        from,
                        to,
                    });
                }
            }
        }
        if let (Ok(handoff), Some(start)) = (handoff, start) {
            model.rotations.insert(
                name.clone(),
                Rotation {
                    name: name.clone(),
                    members: r.members.clone(),
                    handoff,
                    start,
                    overrides,
                },
            );
        }
    }

    for (sev, p) in policies {
        let key = format!("escalation.{sev}");
        let Ok(severity) = sev.parse::<Severity>() else {
            fail(
                &key,
                format!(
                    "{sev:?} is not a severity: policies are [escalation.P1], [escalation.P2] and [escalation.P3]"
                ),
            );
            continue;
        };
        if p.steps.is_empty() {
            fail(
                &format!("{key}.steps"),
                "the policy is empty: give at least one step, e.g. steps = [{ page = [\"tech_lead\"], ack_within = \"5m\" }]".into(),
            );
        }
        if p.repeat > MAX_REPEAT {
            fail(
                &format!("{key}.repeat"),
                format!("must be at most {MAX_REPEAT} (runs of the whole policy after the first)"),
            );
        }
        let mut steps = Vec::new();
        for (i, s) in p.steps.iter().enumerate() {
            let skey = format!("{key}.steps[{i}]");
            if s.page.is_empty() {
                fail(
                    &format!("{skey}.page"),
                    "is empty: name contacts, rotation:NAME, assignee or channel".into(),
                );
            }
            let mut targets = Vec::new();
            for (j, t) in s.page.iter().enumerate() {
                let target = Target::parse(t);
                match &target {
                    Target::Contact(c) if !contacts.contains_key(c) => fail(
                        &format!("{skey}.page[{j}]"),
                        format!(
                            "{}; a target is a contact, rotation:NAME, assignee or channel",
                            unknown_contact(c, contacts)
                        ),
                    ),
                    Target::Rotation(r) if !rotations.contains_key(r) => fail(
                        &format!("{skey}.page[{j}]"),
                        format!(
                            "rotation {r:?} is not defined ({})",
                            known("rotations", rotations.keys())
                        ),
                    ),
                    _ => targets.push(target),
                }
            }
            let ack_within = match &s.ack_within {
                Some(text) => parse_duration(text),
                None => Ok(default_ack_within_ms(severity)),
            };
            match ack_within {
                Ok(ms) if ms <= 0 => fail(&format!("{skey}.ack_within"), "must be above 0".into()),
                Ok(ms) if ms > MAX_ACK_WITHIN_MS => {
                    fail(&format!("{skey}.ack_within"), "must be at most 7d".into())
                }
                Ok(ms) => steps.push(Step {
                    targets,
                    ack_within_ms: ms,
                }),
                Err(m) => fail(&format!("{skey}.ack_within"), m),
            }
        }
        model.policies.insert(
            severity,
            Policy {
                severity,
                steps,
                repeat: p.repeat,
            },
        );
    }

    // A contact who may be paged only while on call must be able to be on
    // call somewhere, or no step would ever reach them.
    for (id, c) in contacts {
        if c.availability == Some(Availability::OnCall)
            && !rotations
                .values()
                .any(|r| r.members.contains(id) || r.overrides.iter().any(|o| &o.who == id))
        {
            fail(
                &format!("contacts.{id}.availability"),
                format!(
                    "is on_call but {id} is in no rotation, so would never be paged; add them to a rotation's members"
                ),
            );
        }
    }

    ok.then_some(model)
}

/// `[pagers.*]` checked, secrets read.
pub fn pagers(p: &PagerSettings, err: &mut impl FnMut(&str, String)) -> Pagers {
    let mut secret = |key: &str, r: &Option<SecretRef>| match r.as_ref().map(SecretRef::resolve) {
        Some(Ok(v)) => Some(v),
        Some(Err(m)) => {
            err(key, m);
            None
        }
        None => {
            err(
                key,
                "is required, as { env = \"VAR\" } or { file = \"/path\" }".into(),
            );
            None
        }
    };
    let mut out = Pagers::default();
    if let Some(e) = &p.email
        && let Some(s) = secret("pagers.email.smtp_url", &e.smtp_url)
    {
        out.email = Some((e.clone(), s));
    }
    if let Some(ph) = &p.phone {
        let sid = secret("pagers.phone.account_sid", &ph.account_sid);
        let token = secret("pagers.phone.auth_token", &ph.auth_token);
        if let (Some(sid), Some(token)) = (sid, token) {
            out.phone = Some((ph.clone(), sid, token));
        }
    }
    if let Some(pd) = &p.pagerduty
        && let Some(s) = secret("pagers.pagerduty.routing_key", &pd.routing_key)
    {
        out.pagerduty = Some((pd.clone(), s));
    }
    if let Some(pd) = &p.pagerduty
        && pd.webhook_secret.is_some()
    {
        out.pagerduty_webhook = secret("pagers.pagerduty.webhook_secret", &pd.webhook_secret);
    }
    if let Some(w) = &p.webhook
        && let Some(s) = secret("pagers.webhook.hmac_secret", &w.hmac_secret)
    {
        out.webhook = Some((w.clone(), s));
    }
    let required = [
        ("pagers.email.from", p.email.as_ref().map(|x| &x.from)),
        ("pagers.phone.from", p.phone.as_ref().map(|x| &x.from)),
        ("pagers.webhook.url", p.webhook.as_ref().map(|x| &x.url)),
    ];
    for (key, value) in required {
        if let Some(None) = value {
            err(key, "is required".into());
        }
    }
    let urls = [
        ("pagers.phone.api_url", p.phone.as_ref().map(|x| &x.api_url)),
        (
            "pagers.pagerduty.api_url",
            p.pagerduty.as_ref().map(|x| &x.api_url),
        ),
        (
            "pagers.webhook.url",
            p.webhook.as_ref().and_then(|x| x.url.as_ref()),
        ),
    ];
    for (key, url) in urls {
        if let Some(url) = url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            err(key, format!("{url:?} is not an http(s) URL"));
        }
    }
    out
}

fn unknown_contact(name: &str, contacts: &BTreeMap<String, ContactSettings>) -> String {
    format!(
        "contact {name:?} is not defined ({})",
        known("contacts", contacts.keys())
    )
}

fn known<'a>(what: &str, names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        format!("there are no [{what}.NAME] sections")
    } else {
        format!("{what}: {}", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use crate::config::load_with_env;
    use crate::domain::Severity;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    /// Every (key, line, message) the text gets from `check-config`.
    fn problems(text: &str) -> Vec<(String, Option<usize>, String)> {
        let f = file(text);
        match load_with_env(Some(f.path()), Vec::new()) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.into_iter()
                    .map(|e| (e.key, e.line, e.message))
                    .collect()
            }
        }
    }

    fn assert_has(found: &[(String, Option<usize>, String)], key: &str, line: usize, words: &str) {
        assert!(
            found
                .iter()
                .any(|(k, l, m)| k == key && *l == Some(line) && m.contains(words)),
            "no {key} (line {line}) saying {words:?} in:\n{}",
            found
                .iter()
                .map(|(k, l, m)| format!("{k} (line {l:?}): {m}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn a_complete_policy_loads_into_the_model() {
        let f = file(
            r#"
[contacts.tech_lead]
availability = "24/7"
email = "lead@example.com"
page_via = ["chat_dm", "email"]

[rotations.primary]
members = ["tech_lead"]
handoff = "daily 09:00"

[escalation.P1]
steps = [{ page = ["tech_lead"], ack_within = "5m" }, { page = ["rotation:primary", "channel"], ack_within = "5m" }]
repeat = 2
"#,
        );

        let c = load_with_env(Some(f.path()), Vec::new()).expect("valid");

        let p1 = c.escalation.policy(Severity::P1).expect("P1");
        assert_eq!((p1.steps.len(), p1.repeat), (2, 2));
        assert_eq!(c.escalation.contacts["tech_lead"].page_via.len(), 2);
        assert!(c.escalation.policy(Severity::P2).is_none());
    }

    #[test]
    fn check_config_names_every_escalation_mistake_with_its_key_and_line() {
        let found = problems(
            r#"[contacts.ann]
timezone = "Mars/Olympus"
availability = "business_hours"
business_hours = ["Mon-Fri 9-18"]
page_via = ["chat_dm", "email", "phone_call"]

[contacts.bob]
availability = "on_call"

[rotations.primary]
members = ["ann", "zed"]
handoff = "fortnightly Mon 10:00"
overrides = [
  { who = "ann", from = "2026-12-26T09:00:00+09:00", to = "2026-12-24T18:00:00+09:00" },
  { who = "nobody", from = "2026-12-24T18:00:00+09:00", to = "soon" },
]

[escalation.P1]
steps = [
  { page = ["ann", "carol"], ack_within = "5m" },
  { page = ["rotation:secondary", "channel"], ack_within = "five minutes" },
]

[escalation.P2]
steps = []

[escalation.P7]
steps = [{ page = ["channel"], ack_within = "1h" }]
"#,
        );

        assert_has(
            &found,
            "contacts.ann.timezone",
            2,
            "\"Mars/Olympus\" is not an IANA time zone",
        );
        assert_has(
            &found,
            "contacts.ann.business_hours[0]",
            4,
            "\"9-18\" is not a time range",
        );
        assert_has(
            &found,
            "contacts.ann.page_via",
            5,
            "has email but ann has no address for it",
        );
        assert_has(
            &found,
            "contacts.ann.page_via",
            5,
            "has phone_call but ann has no address",
        );
        assert_has(
            &found,
            "contacts.bob.availability",
            8,
            "is on_call but bob is in no rotation",
        );
        assert_has(
            &found,
            "rotations.primary.members[1]",
            11,
            "contact \"zed\" is not defined (contacts: ann, bob)",
        );
        assert_has(
            &found,
            "rotations.primary.handoff",
            12,
            "a hand-off is \"daily HH:MM [ZONE]\"",
        );
        assert_has(
            &found,
            "rotations.primary.overrides[0].to",
            14,
            "is not after from",
        );
        assert_has(
            &found,
            "rotations.primary.overrides[1].who",
            15,
            "contact \"nobody\" is not defined",
        );
        assert_has(
            &found,
            "rotations.primary.overrides[1].to",
            15,
            "\"soon\" is not an RFC 3339 time",
        );
        assert_has(
            &found,
            "escalation.P1.steps[0].page[1]",
            20,
            "contact \"carol\" is not defined",
        );
        assert_has(
            &found,
            "escalation.P1.steps[1].page[0]",
            21,
            "rotation \"secondary\" is not defined (rotations: primary)",
        );
        assert_has(
            &found,
            "escalation.P1.steps[1].ack_within",
            21,
            "\"five minutes\" is not a duration",
        );
        assert_has(&found, "escalation.P2.steps", 25, "the policy is empty");
        assert_has(&found, "escalation.P7", 27, "\"P7\" is not a severity");
        assert_eq!(found.len(), 15, "{found:#?}");
    }

    #[test]
    fn a_step_without_ack_within_waits_seed_003s_response_time_for_its_severity() {
        let f = file(
            "[escalation.P1]\nsteps = [{ page = [\"channel\"] }]\n[escalation.P2]\nsteps = [{ page = [\"channel\"] }]\n[escalation.P3]\nsteps = [{ page = [\"channel\"] }]\n",
        );

        let c = load_with_env(Some(f.path()), Vec::new()).expect("valid");

        let ack = |sev| c.escalation.policy(sev).expect("policy").steps[0].ack_within_ms;
        assert_eq!(ack(Severity::P1), 5 * 60_000);
        assert_eq!(ack(Severity::P2), 15 * 60_000);
        assert_eq!(ack(Severity::P3), 60 * 60_000);
    }

    #[test]
    fn an_unknown_availability_or_channel_is_named_with_its_line() {
        let found = problems(
            "[contacts.ann]\navailability = \"weekdays\"\n\n[contacts.bob]\navailability = \"24/7\"\npage_via = [\"pigeon\"]\n",
        );

        assert_has(
            &found,
            "contacts.ann.availability",
            2,
            "unknown variant `weekdays`",
        );
        assert_has(
            &found,
            "contacts.bob.page_via",
            6,
            "unknown variant `pigeon`",
        );
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn a_missing_required_key_is_named_at_its_section() {
        let found = problems(
            "[contacts.ann]\nname = \"Ann\"\n\n[rotations.primary]\nmembers = [\"ann\"]\n\n[pagers.email]\nfrom = \"firstline@example.com\"\n",
        );

        assert_has(
            &found,
            "contacts.ann.availability",
            1,
            "is required: \"24/7\"",
        );
        assert_has(&found, "rotations.primary.handoff", 4, "is required, e.g.");
        assert_has(&found, "pagers.email.smtp_url", 7, "is required, as { env");
        assert_eq!(found.len(), 3, "{found:?}");
    }

    #[test]
    fn two_contacts_with_a_bad_availability_under_commented_headers_are_both_named() {
        let found = problems(
            "[contacts.tech_lead]   # 24/7\navailability = \"24x7\"\n\n[contacts.team_lead]   # via the team lead\navailability = \"24x7\"\n",
        );

        assert_has(
            &found,
            "contacts.tech_lead.availability",
            2,
            "unknown variant `24x7`",
        );
        assert_has(
            &found,
            "contacts.team_lead.availability",
            5,
            "unknown variant `24x7`",
        );
    }

    #[test]
    fn a_pager_secret_written_into_the_file_is_refused_without_echoing_it() {
        let found = problems(
            "[pagers.webhook]\nurl = \"https://pager.example.com/hook\"\nhmac_secret = \"hunter2\"\n\n[pagers.pagerduty]\nrouting_key = { env = \"FIRSTLINE_TEST_NO_SUCH_KEY\" }\n",
        );

        assert_has(
            &found,
            "pagers.webhook.hmac_secret",
            3,
            "a secret is not written into the configuration",
        );
        assert!(!format!("{found:?}").contains("hunter2"));
    }

    #[test]
    fn a_pager_secret_reference_to_a_missing_variable_names_it() {
        let found = problems(
            "[pagers.pagerduty]\nrouting_key = { env = \"FIRSTLINE_TEST_NO_SUCH_KEY\" }\napi_url = \"events.pagerduty.com\"\n",
        );

        assert_has(
            &found,
            "pagers.pagerduty.routing_key",
            2,
            "FIRSTLINE_TEST_NO_SUCH_KEY is not set",
        );
        assert_has(
            &found,
            "pagers.pagerduty.api_url",
            3,
            "is not an http(s) URL",
        );
    }

    #[test]
    fn chat_pages_on_slack_need_the_contacts_slack_id() {
        let found = problems("[contacts.ann]\navailability = \"24/7\"\npage_via = [\"chat_dm\"]\n");
        assert!(found.is_empty(), "console needs no id: {found:?}");
        let found = problems(
            "[chat]\nplatform = \"slack\"\nchannel = \"C0123\"\n[chat.slack]\nbot_token = { env = \"FIRSTLINE_TEST_NO_SUCH_TOKEN\" }\nsigning_secret = { env = \"FIRSTLINE_TEST_NO_SUCH_TOKEN\" }\n\n[contacts.ann]\navailability = \"24/7\"\npage_via = [\"chat_dm\"]\n",
        );
        assert_has(
            &found,
            "contacts.ann.page_via",
            10,
            "has chat_dm but ann has no address for it: add a slack id",
        );
    }
}
