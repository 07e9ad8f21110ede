//! firstline's own webhook shape, for senders that are neither Alertmanager
//! nor Grafana (scripts, uptime checkers, CI jobs).
//!
//! The body is either one alert object or `{"alerts": [alert, ...]}`. An
//! alert object has these fields (all but `title` optional):
//!
//! | field         | type                 | becomes                                             |
//! |---------------|----------------------|-----------------------------------------------------|
//! | `title`       | non-empty string     | label `alertname`, unless `labels.alertname` is set |
//! | `status`      | `firing`/`resolved`  | status (default `firing`)                           |
//! | `severity`    | string               | label `severity`, unless `labels.severity` is set   |
//! | `labels`      | object of strings    | labels                                              |
//! | `annotations` | object of strings    | annotations                                         |
//! | `description` | string               | annotation `description`, unless already set        |
//! | `starts_at`   | RFC 3339             | start (absent: the server uses the receive time)    |
//! | `ends_at`     | RFC 3339             | end (kept for resolved alerts only)                 |
//! | `fingerprint` | string               | fingerprint (else computed from the final labels)   |
//! | `source_url`  | string               | generator URL                                       |
//!
//! Because the shape is ours, unknown fields are rejected, so that a typo
//! such as `sevrity` is reported instead of silently dropped.

use crate::domain::alert::{AlertStatus, IncomingAlert, ParsedWebhook, Source};

use super::parse_error::{Obj, ParseError, label_fingerprint, parse_object};

/// The fields of one generic alert, in the order error messages list them.
const ALERT_FIELDS: &[&str] = &[
    "title",
    "status",
    "severity",
    "labels",
    "annotations",
    "description",
    "starts_at",
    "ends_at",
    "fingerprint",
    "source_url",
];

/// Parses a generic webhook body.
pub fn parse(body: &[u8]) -> Result<ParsedWebhook, ParseError> {
    let map = parse_object(body)?;
    let root = Obj::root(&map);
    let alerts = if root.has("alerts") {
        root.deny_unknown(&["alerts"])?;
        root.req_objects("alerts")?
            .iter()
            .map(parse_alert)
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![parse_alert(&root)?]
    };
    Ok(ParsedWebhook {
        alerts,
        truncated_alerts: 0,
        receiver: None,
    })
}

fn parse_alert(alert: &Obj<'_>) -> Result<IncomingAlert, ParseError> {
    alert.deny_unknown(ALERT_FIELDS)?;

    let title = alert.req_str("title")?;
    if title.trim().is_empty() {
        return Err(alert.error("title", "must not be empty"));
    }
    let status = alert.opt_status("status")?.unwrap_or(AlertStatus::Firing);

    let mut labels = alert.opt_string_map("labels")?;
    labels
        .entry("alertname".to_owned())
        .or_insert_with(|| title.to_owned());
    if let Some(severity) = alert.opt_str("severity")? {
        labels
            .entry("severity".to_owned())
            .or_insert_with(|| severity.to_owned());
    }

    let mut annotations = alert.opt_string_map("annotations")?;
    if let Some(description) = alert.opt_str("description")? {
        annotations
            .entry("description".to_owned())
            .or_insert_with(|| description.to_owned());
    }

    let starts_at = alert.opt_time("starts_at")?;
    let ends_at = alert.opt_time("ends_at")?;
    let fingerprint = match alert.opt_non_empty_str("fingerprint")? {
        Some(fp) => fp.to_owned(),
        None => label_fingerprint(&labels),
    };
    let generator_url = alert.opt_non_empty_str("source_url")?.map(str::to_owned);

    Ok(IncomingAlert {
        source: Source::Generic,
        fingerprint,
        status,
        starts_at,
        ends_at: status.end_time(ends_at),
        labels,
        annotations,
        generator_url,
        group_key: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::time::Millis;

    const SINGLE: &[u8] = include_bytes!("../../../tests/fixtures/generic_single.json");
    const MANY: &[u8] = include_bytes!("../../../tests/fixtures/generic_many.json");

    fn parse_value(body: Value) -> Result<ParsedWebhook, ParseError> {
        parse(&serde_json::to_vec(&body).expect("serialisable"))
    }

    fn assert_error(result: Result<ParsedWebhook, ParseError>, field: &str, fragment: &str) {
        let e = result.expect_err("payload must be rejected");
        assert_eq!(e.field, field, "{e}");
        assert!(
            e.message.contains(fragment),
            "{e:?} should contain {fragment:?}"
        );
    }

    #[test]
    fn single_fixture_gives_one_firing_alert_with_title_and_severity_as_labels() {
        let parsed = parse(SINGLE).unwrap();
        assert_eq!(parsed.truncated_alerts, 0);
        assert_eq!(parsed.receiver, None);
        let [alert] = &parsed.alerts[..] else {
            panic!("one alert expected");
        };
        assert_eq!(alert.source, Source::Generic);
        assert_eq!(alert.status, AlertStatus::Firing);
        assert_eq!(alert.name(), "PaymentProviderTimeouts");
        assert_eq!(alert.labels["severity"], "critical");
        assert_eq!(alert.labels["service"], "payments");
        assert_eq!(alert.labels.len(), 5);
        assert!(alert.annotations["description"].starts_with("Card authorisations"));
        assert!(alert.annotations.contains_key("runbook_url"));
        assert_eq!(alert.starts_at, Some(Millis(1_773_493_500_000)));
        assert_eq!(alert.ends_at, None);
        assert_eq!(alert.group_key, None);
        assert_eq!(
            alert.generator_url.as_deref(),
            Some("https://uptime.example.com/checks/payments-provider")
        );
        assert_eq!(alert.fingerprint, "7204542004c60b73");
        assert_eq!(alert.fingerprint, label_fingerprint(&alert.labels));
    }

    #[test]
    fn many_fixture_gives_three_alerts_with_given_or_computed_fingerprints() {
        let parsed = parse(MANY).unwrap();
        let [cert, backup, lag] = &parsed.alerts[..] else {
            panic!("three alerts expected");
        };

        assert_eq!(cert.name(), "CertificateExpiringSoon");
        assert_eq!(cert.status, AlertStatus::Firing);
        assert_eq!(cert.labels["severity"], "warning");
        assert_eq!(cert.fingerprint, "066a3e35e5a7be65");
        assert_eq!(cert.starts_at, Some(Millis(1_773_468_000_000)));

        assert_eq!(backup.name(), "NightlyBackupFailed");
        assert_eq!(backup.status, AlertStatus::Resolved);
        assert_eq!(backup.fingerprint, "backup-orders-nightly");
        assert_eq!(backup.starts_at, Some(Millis(1_773_454_200_000)));
        assert_eq!(backup.ends_at, Some(Millis(1_773_462_735_000)));
        assert_eq!(
            backup.annotations["summary"],
            "Nightly backup of orders failed"
        );

        assert_eq!(lag.name(), "Queue consumer lag on emails");
        assert_eq!(lag.status, AlertStatus::Firing);
        assert_eq!(lag.starts_at, None);
        assert_eq!(lag.fingerprint, "f2118aada302c541");
        assert!(lag.annotations.is_empty());
        assert!(parsed.alerts.iter().all(|a| a.source == Source::Generic));
    }

    #[test]
    fn explicit_labels_win_over_title_severity_and_description() {
        let parsed = parse_value(json!({
            "title": "Disk almost full",
            "severity": "warning",
            "description": "from the field",
            "labels": {"alertname": "DiskFull", "severity": "critical"},
            "annotations": {"description": "from annotations"},
        }))
        .unwrap();
        let alert = &parsed.alerts[0];
        assert_eq!(alert.name(), "DiskFull");
        assert_eq!(alert.labels["severity"], "critical");
        assert_eq!(alert.annotations["description"], "from annotations");
    }

    #[test]
    fn fingerprint_is_the_same_for_firing_and_resolved_deliveries() {
        let firing =
            parse_value(json!({"title": "Backup failed", "labels": {"db": "orders"}})).unwrap();
        let resolved = parse_value(json!({
            "title": "Backup failed",
            "labels": {"db": "orders"},
            "status": "resolved",
            "ends_at": "2026-03-14T04:32:15Z",
        }))
        .unwrap();
        assert_eq!(firing.alerts[0].fingerprint, resolved.alerts[0].fingerprint);
    }

    #[test]
    fn unknown_field_is_rejected_listing_the_known_ones() {
        let result = parse_value(json!({"title": "Disk full", "sevrity": "critical"}));
        assert_error(
            result,
            "sevrity",
            "unknown field \"sevrity\"; expected one of title, status, severity, labels, \
             annotations, description, starts_at, ends_at, fingerprint, source_url",
        );
    }

    #[test]
    fn unknown_field_inside_a_list_is_named_by_its_path() {
        let result =
            parse_value(json!({"alerts": [{"title": "a"}, {"title": "b", "startsAt": "x"}]}));
        assert_error(result, "alerts[1].startsAt", "unknown field \"startsAt\"");
        let result = parse_value(json!({"alerts": [{"title": "a"}], "version": "4"}));
        assert_error(result, "version", "expected one of alerts");
    }

    #[test]
    fn missing_title_is_rejected() {
        assert_error(
            parse_value(json!({"severity": "critical"})),
            "title",
            "missing",
        );
        assert_error(
            parse_value(json!({"title": "  "})),
            "title",
            "must not be empty",
        );
        assert_error(
            parse_value(json!({"alerts": [{"title": "ok"}, {"title": 3}]})),
            "alerts[1].title",
            "expected a string, got a number",
        );
    }

    #[test]
    fn body_that_is_not_json_is_rejected_with_its_position() {
        let body = b"<html>Disk full</html>";
        assert_error(parse(body), "body", "not valid JSON");
        assert_error(parse(body), "body", "line 1 column 1");
    }

    #[test]
    fn json_array_body_is_rejected() {
        assert_error(
            parse(br#"[{"title": "a"}]"#),
            "body",
            "expected a JSON object, got an array",
        );
    }

    #[test]
    fn empty_or_non_array_alerts_are_rejected() {
        assert_error(
            parse_value(json!({"alerts": []})),
            "alerts",
            "must not be an empty array",
        );
        assert_error(
            parse_value(json!({"alerts": {"title": "a"}})),
            "alerts",
            "expected an array",
        );
    }

    #[test]
    fn bad_field_values_are_rejected_naming_the_field() {
        assert_error(
            parse_value(json!({"title": "a", "status": "ok"})),
            "status",
            "got \"ok\"",
        );
        assert_error(
            parse_value(json!({"title": "a", "starts_at": "14/03/2026"})),
            "starts_at",
            "expected an RFC 3339 time",
        );
        assert_error(
            parse_value(json!({"title": "a", "labels": {"team": 1}})),
            "labels.team",
            "expected a string, got a number",
        );
        assert_error(
            parse_value(json!({"title": "a", "severity": ["high"]})),
            "severity",
            "expected a string, got an array",
        );
    }
}
