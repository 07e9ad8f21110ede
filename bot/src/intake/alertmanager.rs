//! Prometheus Alertmanager webhook payloads (`version: "4"`), as documented
//! at <https://prometheus.io/docs/alerting/latest/configuration/#webhook_config>.
//!
//! A well-formed payload is read straight into types
//! ([`parse_well_formed`]); any other is walked as a `serde_json::Value`
//! so that every rejection names its field. Fields firstline does not use
//! (`groupLabels`, `commonLabels`, `externalURL`, and whatever newer
//! Alertmanagers add) are ignored, not validated. Grafana's webhook is the same shape with another
//! version, so [`parse_grouped`] serves both.

use crate::domain::alert::{AlertStatus, IncomingAlert, ParsedWebhook, Source};
use crate::domain::time::Millis;

use super::parse_error::{Obj, ParseError, label_fingerprint, parse_object_keeping};

/// The top-level fields an Alertmanager-shaped payload is read for (the
/// version and what [`parse_grouped`] reads); the rest are skipped.
pub(crate) const GROUPED_FIELDS: &[&str] = &[
    "version",
    "groupKey",
    "truncatedAlerts",
    "receiver",
    "alerts",
];

/// The only payload version this parser understands.
const VERSION: &str = "4";

/// Parses an Alertmanager webhook body.
pub fn parse(body: &[u8]) -> Result<ParsedWebhook, ParseError> {
    match parse_well_formed(body, Source::Alertmanager, |v| v == Some(VERSION)) {
        Some(parsed) => Ok(parsed),
        None => parse_field_by_field(body),
    }
}

/// [`parse`], walking a `serde_json::Value` so that a rejection names its
/// field.
fn parse_field_by_field(body: &[u8]) -> Result<ParsedWebhook, ParseError> {
    let map = parse_object_keeping(body, GROUPED_FIELDS)?;
    let root = Obj::root(&map);
    match root.opt_str("version")? {
        Some(VERSION) => {}
        None => return Err(root.error("version", format!("missing, expected {VERSION:?}"))),
        Some(other) => {
            return Err(root.error(
                "version",
                format!(
                    "unsupported version {:?}, expected {VERSION:?}",
                    crate::text::clip(other, 64)
                ),
            ));
        }
    }
    parse_grouped(&root, Source::Alertmanager)
}

/// Reads the group-level fields and the alerts of an Alertmanager-shaped
/// payload (Alertmanager's or Grafana's; the caller has checked `version`).
///
/// - `groupKey` (optional string) becomes every alert's `group_key`;
/// - `truncatedAlerts` (optional non-negative integer, default 0);
/// - `receiver` (optional string);
/// - `alerts` (required non-empty array), each with a required `status`,
///   `labels` and `startsAt`, and optional `annotations`, `endsAt`,
///   `generatorURL` and `fingerprint` (computed from the labels with
///   [`label_fingerprint`] when absent or empty).
///
/// A firing alert's `endsAt` is dropped: Alertmanager sends Go's zero time
/// there, and an end time is only meaningful once the alert has resolved.
pub(crate) fn parse_grouped(root: &Obj<'_>, source: Source) -> Result<ParsedWebhook, ParseError> {
    let group_key = root.opt_non_empty_str("groupKey")?;
    let truncated_alerts = root.opt_u64("truncatedAlerts")?.unwrap_or(0);
    let receiver = root.opt_str("receiver")?.map(str::to_owned);
    let alerts = root
        .req_objects("alerts")?
        .iter()
        .map(|alert| parse_alert(alert, source, group_key))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ParsedWebhook {
        alerts,
        truncated_alerts,
        receiver,
    })
}

/// An Alertmanager-shaped body as serde reads it straight into types, with
/// no `serde_json::Value` in between. Every field has the one type the
/// rules of [`parse_grouped`] accept, so a body that deserializes here
/// means the same as it does there; anything else (a `null` where a value
/// is required, a number for a string, a key given twice) fails here and
/// takes the slow path, which names the field.
#[derive(serde::Deserialize)]
struct WellFormed {
    version: Option<String>,
    #[serde(rename = "groupKey")]
    group_key: Option<String>,
    #[serde(rename = "truncatedAlerts")]
    truncated_alerts: Option<u64>,
    receiver: Option<String>,
    alerts: Vec<WellFormedAlert>,
}

#[derive(serde::Deserialize)]
struct WellFormedAlert {
    status: String,
    labels: std::collections::BTreeMap<String, String>,
    annotations: Option<std::collections::BTreeMap<String, String>>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: Option<String>,
    #[serde(rename = "generatorURL")]
    generator_url: Option<String>,
    fingerprint: Option<String>,
}

/// The fast path of [`parse`] (and Grafana's): the parsed body when it is
/// well formed and its version passes `version_ok`, else `None`, and the
/// caller parses it field by field to say what is wrong. Building a
/// `serde_json::Value` first cost ~18,000 instructions per single-alert
/// body, 8 % of all the server spent on an alert (callgrind).
pub(crate) fn parse_well_formed(
    body: &[u8],
    source: Source,
    version_ok: impl FnOnce(Option<&str>) -> bool,
) -> Option<ParsedWebhook> {
    let body: WellFormed = serde_json::from_slice(body).ok()?;
    if !version_ok(body.version.as_deref()) || body.alerts.is_empty() {
        return None;
    }
    let group_key = body.group_key.filter(|k| !k.is_empty());
    let alerts = body
        .alerts
        .into_iter()
        .map(|a| {
            let status = AlertStatus::parse(&a.status)?;
            let starts_at = Millis::parse_rfc3339(&a.starts_at).ok()?;
            let ends_at = match a.ends_at {
                Some(t) => Millis::parse_rfc3339(&t).ok()?,
                None => None,
            };
            let fingerprint = match a.fingerprint.filter(|f| !f.is_empty()) {
                Some(fp) => fp,
                None => label_fingerprint(&a.labels),
            };
            Some(IncomingAlert {
                source,
                fingerprint,
                status,
                starts_at,
                ends_at: status.end_time(ends_at),
                labels: a.labels,
                annotations: a.annotations.unwrap_or_default(),
                generator_url: a.generator_url.filter(|u| !u.is_empty()),
                group_key: group_key.clone(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(ParsedWebhook {
        alerts,
        truncated_alerts: body.truncated_alerts.unwrap_or(0),
        receiver: body.receiver,
    })
}

fn parse_alert(
    alert: &Obj<'_>,
    source: Source,
    group_key: Option<&str>,
) -> Result<IncomingAlert, ParseError> {
    let status = alert.req_status("status")?;
    let labels = alert.req_string_map("labels")?;
    let annotations = alert.opt_string_map("annotations")?;
    let starts_at = alert.req_time("startsAt")?;
    let ends_at = alert.opt_time("endsAt")?;
    let generator_url = alert.opt_non_empty_str("generatorURL")?.map(str::to_owned);
    let fingerprint = match alert.opt_non_empty_str("fingerprint")? {
        Some(fp) => fp.to_owned(),
        None => label_fingerprint(&labels),
    };
    Ok(IncomingAlert {
        source,
        fingerprint,
        status,
        starts_at,
        ends_at: status.end_time(ends_at),
        labels,
        annotations,
        generator_url,
        group_key: group_key.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::time::Millis;

    const FIRING: &[u8] = include_bytes!("../../../tests/fixtures/alertmanager_firing.json");
    const RESOLVED: &[u8] = include_bytes!("../../../tests/fixtures/alertmanager_resolved.json");
    const TRUNCATED: &[u8] = include_bytes!("../../../tests/fixtures/alertmanager_truncated.json");

    const GROUP_KEY: &str =
        r#"{}/{severity="critical"}:{alertname="HighErrorRate", service="account"}"#;

    fn fixture(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("fixture is JSON")
    }

    /// The firing fixture changed by `edit`, parsed; must fail.
    fn error_after(edit: impl FnOnce(&mut Value)) -> ParseError {
        let mut body = fixture(FIRING);
        edit(&mut body);
        let bytes = serde_json::to_vec(&body).expect("serialisable");
        parse(&bytes).expect_err("edited payload must be rejected")
    }

    fn assert_error(e: &ParseError, field: &str, fragment: &str) {
        assert_eq!(e.field, field, "{e}");
        assert!(
            e.message.contains(fragment),
            "{e:?} should contain {fragment:?}"
        );
    }

    /// The fast path either gives what the field-by-field parse gives, or
    /// steps aside; it never accepts a body the other refuses.
    fn assert_fast_path_agrees(body: &[u8]) -> bool {
        let slow = parse_field_by_field(body);
        let fast = parse_well_formed(body, Source::Alertmanager, |v| v == Some(VERSION));
        match (&fast, &slow) {
            (Some(f), Ok(s)) => assert_eq!(f, s, "{}", String::from_utf8_lossy(body)),
            (Some(_), Err(e)) => panic!("fast path accepted a body refused with {e}"),
            (None, _) => {}
        }
        assert_eq!(parse(body), slow);
        fast.is_some()
    }

    #[test]
    fn well_formed_bodies_skip_the_field_by_field_parse_and_read_the_same() {
        for body in [FIRING, RESOLVED, TRUNCATED] {
            assert!(assert_fast_path_agrees(body), "fixture took the slow path");
        }
        type Edit = fn(&mut Value);
        let read_the_same: [Edit; 9] = [
            |b| b["alerts"][0]["fingerprint"] = json!(""),
            |b| {
                if let Some(alert) = b["alerts"][0].as_object_mut() {
                    alert.remove("fingerprint");
                }
            },
            |b| b["alerts"][0]["generatorURL"] = json!(""),
            |b| b["alerts"][0]["annotations"] = Value::Null,
            |b| b["alerts"][0]["endsAt"] = Value::Null,
            |b| b["truncatedAlerts"] = json!(3),
            |b| b["groupKey"] = json!(""),
            |b| b["receiver"] = Value::Null,
            |b| b["extra"] = json!({"nested": [1, {"x": null}]}),
        ];
        let refused_or_slow: [Edit; 16] = [
            |b| b["version"] = Value::Null,
            |b| b["version"] = json!(4),
            |b| b["version"] = json!("3"),
            |b| b["truncatedAlerts"] = json!(-1),
            |b| b["truncatedAlerts"] = json!(1.5),
            |b| b["receiver"] = json!(5),
            |b| b["alerts"] = json!([]),
            |b| b["alerts"] = Value::Null,
            |b| b["alerts"][0] = json!(5),
            |b| b["alerts"][0]["status"] = json!("bogus"),
            |b| b["alerts"][0]["status"] = Value::Null,
            |b| b["alerts"][0]["labels"]["severity"] = json!(1),
            |b| b["alerts"][0]["labels"] = Value::Null,
            |b| b["alerts"][0]["startsAt"] = json!("yesterday"),
            |b| b["alerts"][0]["startsAt"] = Value::Null,
            |b| b["alerts"][0]["annotations"] = json!(["a"]),
        ];
        for (i, edit) in read_the_same.iter().enumerate() {
            let mut body = fixture(FIRING);
            edit(&mut body);
            let bytes = serde_json::to_vec(&body).unwrap();
            assert!(
                assert_fast_path_agrees(&bytes),
                "edit {i} took the slow path"
            );
        }
        for edit in refused_or_slow {
            let mut body = fixture(FIRING);
            edit(&mut body);
            assert_fast_path_agrees(&serde_json::to_vec(&body).unwrap());
        }
        // A key given twice: the slow path reads the last one.
        let text = std::str::from_utf8(FIRING).unwrap().trim_start();
        let twice = format!("{{\"receiver\": \"first\", {}", &text[1..]);
        assert!(!assert_fast_path_agrees(twice.as_bytes()));
        for bad in [&b""[..], b"[]", b"{\"version\": \"4\"} x", b"{"] {
            assert!(!assert_fast_path_agrees(bad));
        }
    }

    #[test]
    fn firing_fixture_gives_two_firing_alerts_of_one_group() {
        let parsed = parse(FIRING).unwrap();
        assert_eq!(parsed.alerts.len(), 2);
        assert_eq!(parsed.truncated_alerts, 0);
        assert_eq!(parsed.receiver.as_deref(), Some("firstline"));
        for alert in &parsed.alerts {
            assert_eq!(alert.source, Source::Alertmanager);
            assert_eq!(alert.status, AlertStatus::Firing);
            assert_eq!(alert.group_key.as_deref(), Some(GROUP_KEY));
            assert_eq!(alert.name(), "HighErrorRate");
            assert_eq!(alert.labels["service"], "account");
            assert_eq!(alert.labels["severity"], "critical");
            assert_eq!(alert.labels["job"], "account-api");
            assert!(
                alert
                    .generator_url
                    .as_deref()
                    .unwrap()
                    .starts_with("http://prometheus")
            );
        }
        let first = &parsed.alerts[0];
        assert_eq!(first.fingerprint, "d6a04d524fe8c42e");
        assert_eq!(first.labels["instance"], "10.0.3.17:8080");
        assert_eq!(first.starts_at, Some(Millis(1_773_480_413_480)));
        assert_eq!(
            first.annotations["runbook_url"],
            "https://runbooks.example.com/account/high-error-rate"
        );
        assert_eq!(parsed.alerts[1].fingerprint, "00a47141eb235701");
        assert_eq!(parsed.alerts[1].starts_at, Some(Millis(1_773_480_428_480)));
    }

    #[test]
    fn firing_alert_carries_go_zero_end_time_as_none() {
        let parsed = parse(FIRING).unwrap();
        assert!(parsed.alerts.iter().all(|a| a.ends_at.is_none()));
    }

    #[test]
    fn firing_alert_end_time_is_dropped_even_when_set() {
        let mut body = fixture(FIRING);
        body["alerts"][0]["endsAt"] = json!("2026-03-14T09:30:53.48Z");
        let parsed = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(parsed.alerts[0].ends_at, None);
    }

    #[test]
    fn resolved_fixture_keeps_fingerprints_and_start_and_sets_end() {
        let firing = parse(FIRING).unwrap();
        let resolved = parse(RESOLVED).unwrap();
        assert_eq!(resolved.alerts.len(), 2);
        for (f, r) in firing.alerts.iter().zip(&resolved.alerts) {
            assert_eq!(r.status, AlertStatus::Resolved);
            assert_eq!(r.fingerprint, f.fingerprint);
            assert_eq!(r.starts_at, f.starts_at);
            assert_eq!(r.labels, f.labels);
            assert_eq!(r.group_key, f.group_key);
        }
        assert_eq!(resolved.alerts[0].ends_at, Some(Millis(1_773_481_283_480)));
        assert_eq!(resolved.alerts[1].ends_at, Some(Millis(1_773_481_358_480)));
    }

    #[test]
    fn truncated_fixture_reports_three_dropped_alerts() {
        let parsed = parse(TRUNCATED).unwrap();
        assert_eq!(parsed.truncated_alerts, 3);
        assert_eq!(parsed.alerts.len(), 2);
        assert_eq!(parsed.alerts[0].name(), "HighLatency");
        assert_eq!(parsed.alerts[0].fingerprint, "3bfd6ecb1d231ab5");
        assert_eq!(parsed.alerts[1].fingerprint, "e31aa702222bf906");
        assert_eq!(parsed.alerts[0].starts_at, Some(Millis(1_773_482_531_913)));
        assert_eq!(
            parsed.alerts[0].group_key.as_deref(),
            Some(r#"{}/{severity="warning"}:{alertname="HighLatency", service="checkout"}"#)
        );
    }

    #[test]
    fn unknown_fields_from_newer_alertmanagers_are_ignored() {
        let mut body = fixture(FIRING);
        body["notification_reason"] = json!("new_alerts");
        body["alerts"][0]["somethingNew"] = json!({"nested": [1, 2]});
        let parsed = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(parsed, parse(FIRING).unwrap());
    }

    #[test]
    fn missing_fingerprint_is_computed_from_the_labels() {
        let mut body = fixture(FIRING);
        body["alerts"][0]
            .as_object_mut()
            .unwrap()
            .remove("fingerprint");
        body["alerts"][1]["fingerprint"] = json!("");
        let parsed = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        for alert in &parsed.alerts {
            assert_eq!(alert.fingerprint, label_fingerprint(&alert.labels));
        }
        assert_eq!(parsed.alerts[0].fingerprint, "0ed7074fbea249ef");
        assert_ne!(parsed.alerts[0].fingerprint, parsed.alerts[1].fingerprint);
    }

    #[test]
    fn optional_fields_may_be_absent_or_null() {
        let body = json!({
            "version": "4",
            "annotations": null,
            "alerts": [{
                "status": "firing",
                "labels": {"alertname": "Up"},
                "annotations": null,
                "startsAt": "2026-03-14T09:26:53Z",
            }],
        });
        let parsed = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(parsed.truncated_alerts, 0);
        assert_eq!(parsed.receiver, None);
        let alert = &parsed.alerts[0];
        assert_eq!(alert.group_key, None);
        assert_eq!(alert.generator_url, None);
        assert!(alert.annotations.is_empty());
    }

    #[test]
    fn body_that_is_not_json_is_rejected_with_its_position() {
        let e = parse(b"{\"version\": \"4\",\n \"alerts\": [}").unwrap_err();
        assert_error(&e, "body", "not valid JSON");
        assert!(e.message.contains("line 2 column"), "{e}");
    }

    #[test]
    fn json_array_body_is_rejected() {
        let e = parse(b"[{\"version\": \"4\"}]").unwrap_err();
        assert_error(&e, "body", "expected a JSON object, got an array");
    }

    #[test]
    fn missing_version_is_rejected() {
        let e = error_after(|b| {
            b.as_object_mut().unwrap().remove("version");
        });
        assert_error(&e, "version", "missing, expected \"4\"");
    }

    #[test]
    fn wrong_version_is_rejected_naming_the_one_received() {
        let e = error_after(|b| b["version"] = json!("3"));
        assert_error(&e, "version", "unsupported version \"3\"");
        let e = error_after(|b| b["version"] = json!(4));
        assert_error(&e, "version", "expected a string, got a number");
    }

    #[test]
    fn empty_alerts_are_rejected() {
        let e = error_after(|b| b["alerts"] = json!([]));
        assert_error(&e, "alerts", "must not be an empty array");
    }

    #[test]
    fn alerts_that_are_not_an_array_are_rejected() {
        let e = error_after(|b| b["alerts"] = json!("HighErrorRate"));
        assert_error(&e, "alerts", "expected an array, got a string");
        let e = error_after(|b| {
            b.as_object_mut().unwrap().remove("alerts");
        });
        assert_error(&e, "alerts", "missing");
        let e = error_after(|b| b["alerts"][1] = json!(7));
        assert_error(&e, "alerts[1]", "expected an object, got a number");
    }

    #[test]
    fn bad_status_is_rejected() {
        let e = error_after(|b| b["alerts"][1]["status"] = json!("FIRING"));
        assert_error(
            &e,
            "alerts[1].status",
            "expected \"firing\" or \"resolved\", got \"FIRING\"",
        );
        let e = error_after(|b| {
            b["alerts"][0].as_object_mut().unwrap().remove("status");
        });
        assert_error(&e, "alerts[0].status", "missing");
    }

    #[test]
    fn bad_starts_at_is_rejected() {
        let e = error_after(|b| b["alerts"][1]["startsAt"] = json!("yesterday"));
        assert_error(
            &e,
            "alerts[1].startsAt",
            "expected an RFC 3339 time, got \"yesterday\"",
        );
        let e = error_after(|b| {
            b["alerts"][0].as_object_mut().unwrap().remove("startsAt");
        });
        assert_error(&e, "alerts[0].startsAt", "missing");
        let e = error_after(|b| b["alerts"][0]["endsAt"] = json!(0));
        assert_error(&e, "alerts[0].endsAt", "expected a string");
    }

    #[test]
    fn non_string_label_value_is_rejected_naming_the_label() {
        let e = error_after(|b| b["alerts"][0]["labels"]["severity"] = json!(2));
        assert_error(
            &e,
            "alerts[0].labels.severity",
            "expected a string, got a number",
        );
        let e = error_after(|b| b["alerts"][1]["annotations"]["summary"] = json!(["a"]));
        assert_error(
            &e,
            "alerts[1].annotations.summary",
            "expected a string, got an array",
        );
        let e = error_after(|b| b["alerts"][0]["labels"] = json!("alertname=HighErrorRate"));
        assert_error(
            &e,
            "alerts[0].labels",
            "expected an object of strings, got a string",
        );
    }

    #[test]
    fn negative_truncated_alerts_is_rejected() {
        let e = error_after(|b| b["truncatedAlerts"] = json!(-1));
        assert_error(
            &e,
            "truncatedAlerts",
            "expected a non-negative integer, got -1",
        );
        let e = error_after(|b| b["truncatedAlerts"] = json!("3"));
        assert_error(
            &e,
            "truncatedAlerts",
            "expected a non-negative integer, got a string",
        );
    }

    #[test]
    fn wrong_types_of_group_fields_are_rejected() {
        let e = error_after(|b| b["groupKey"] = json!({}));
        assert_error(&e, "groupKey", "expected a string, got an object");
        let e = error_after(|b| b["receiver"] = json!(true));
        assert_error(&e, "receiver", "expected a string, got a boolean");
        let e = error_after(|b| b["alerts"][0]["fingerprint"] = json!(12));
        assert_error(&e, "alerts[0].fingerprint", "expected a string");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        for body in [
            &b""[..],
            b"\xff\xfe",
            b"null",
            b"\"4\"",
            b"{",
            b"{\"alerts\":{}}",
        ] {
            assert!(parse(body).is_err());
        }
    }
}
