//! A run's [`Report`] as users read it in JSON (`runbook run --json`, the
//! findings event on the timeline API and in the postmortem export).
//!
//! `Report::bottleneck` is an index into `findings` (0-based), while the
//! findings text names the check by its number (`Likely bottleneck: #2`).
//! Here `bottleneck` is that same 1-based number, and `bottleneck_check`
//! names the check's id, so the JSON and the text agree.

use serde_json::Value;

use super::run::Report;

/// `report` as JSON with the bottleneck numbered from 1 (`null` when no
/// configured check failed or could not observe).
pub fn to_value(report: &Report) -> Value {
    let mut value = match serde_json::to_value(report) {
        Ok(v) => v,
        Err(e) => {
            return serde_json::json!({"error": format!("the report could not be serialized: {e}")});
        }
    };
    if let Some(fields) = value.as_object_mut() {
        let at = report.bottleneck;
        fields.insert("bottleneck".into(), at.map(|i| i + 1).into());
        fields.insert(
            "bottleneck_check".into(),
            at.and_then(|i| report.findings.get(i))
                .map(|f| f.check_id.clone())
                .into(),
        );
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::run::{Finding, Status};

    fn finding(id: &str, status: Status) -> Finding {
        Finding {
            check_id: id.into(),
            title: id.into(),
            probe: "http",
            target: "api".into(),
            status,
            observed: None,
            threshold: None,
            meaning: None,
            evidence: String::new(),
            duration_ms: 1,
            error: None,
            unconfigured: false,
            missing_labels: Vec::new(),
            breaches: Vec::new(),
            show_evidence: false,
        }
    }

    fn report(bottleneck: Option<usize>) -> Report {
        Report {
            runbook_id: "rb".into(),
            title: "t".into(),
            title_en: "t".into(),
            findings: vec![
                finding("first", Status::Ok),
                finding("second", Status::Fail),
            ],
            bottleneck,
            verdict: None,
            duration_ms: 2,
        }
    }

    #[test]
    fn the_bottleneck_is_the_checks_number_as_the_text_shows_it() {
        let v = to_value(&report(Some(1)));
        assert_eq!(v["bottleneck"], 2);
        assert_eq!(v["bottleneck_check"], "second");
        assert_eq!(v["findings"][1]["check_id"], "second");
    }

    #[test]
    fn no_bottleneck_is_null() {
        let v = to_value(&report(None));
        assert!(v["bottleneck"].is_null());
        assert!(v["bottleneck_check"].is_null());
    }
}
