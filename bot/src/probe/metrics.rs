//! The `metrics` probe. See [`MetricsProbe`] for the data it observes.
//!
//! The exposition is parsed with the `prometheus-parse` crate. That crate
//! skips lines it cannot read, so each sample line is first checked with
//! its own line reader: a body that is not the text format (an HTML error
//! page, JSON) is reported as malformed instead of "no sample".

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_parse::{LineInfo, Scrape, Value};
use reqwest::header::{ACCEPT, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::http::{
    EVIDENCE_CHARS, EVIDENCE_LINES, display_url, get_once, header_map, join_url, parse_url, redact,
    status_line,
};
use super::{Observation, ProbeError, Target, TargetSettings, trim_evidence};

/// `kind = "metrics"`: scrape a `/metrics` endpoint in Prometheus text
/// format and select one metric by name and labels (seed 004 §2:
/// `worker_dlq_total`).
///
/// Data: `{"samples": [{"labels": {…}, "value": 3.0}], "count": 1, "sum":
/// 3.0, "max": 3.0}` (sum/max 0 and null when nothing matched).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsProbe {
    /// An `http` target.
    pub target: String,
    #[serde(default = "default_path")]
    pub path: String,
    /// Metric name, e.g. `worker_dlq_total`.
    pub metric: String,
    /// Label equality matchers; all must hold.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_path() -> String {
    "/metrics".into()
}

/// The most of a `/metrics` page the probe reads.
const METRICS_BODY_CAP: usize = 16 * 1024 * 1024;

/// One series of an exposition, as written: histograms as `NAME_bucket`
/// with an `le` label, summaries as `NAME` with a `quantile` label, their
/// `NAME_sum` and `NAME_count` as they are.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Observes `p` on `target`.
pub async fn observe(
    p: &MetricsProbe,
    target: &Target,
    timeout: Duration,
) -> Result<Observation, ProbeError> {
    let name = &target.name;
    let (base_url, target_headers) = match &target.settings {
        TargetSettings::Http {
            base_url, headers, ..
        } => (base_url, headers),
        other => {
            return Err(ProbeError::Config(
                name.clone(),
                format!(
                    "the metrics probe needs an http target, not {}",
                    other.kind()
                ),
            ));
        }
    };
    let url = parse_url(name, &join_url(base_url, &p.path))?;
    let mut headers = header_map(target, target_headers, &BTreeMap::new())?;
    if !headers.contains_key(ACCEPT) {
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("text/plain;version=0.0.4;q=1.0, */*;q=0.1"),
        );
    }
    let (status, raw) = get_once(target, &url, headers, timeout, METRICS_BODY_CAP).await?;
    if !status.is_success() {
        return Err(ProbeError::Failed(
            name.clone(),
            format!("{} from {}", status_line(status), display_url(&url)),
        ));
    }
    let text = redact(&String::from_utf8_lossy(&raw), target);
    let all = parse_exposition(&text).map_err(|why| {
        ProbeError::Malformed(
            name.clone(),
            format!("{} is not Prometheus text format: {why}", display_url(&url)),
        )
    })?;
    let selected: Vec<&Series> = all
        .iter()
        .filter(|s| {
            s.name == p.metric
                && p.labels
                    .iter()
                    .all(|(k, want)| label_matches(k, s.labels.get(k), want))
        })
        .collect();

    let finite: Vec<f64> = selected
        .iter()
        .map(|s| s.value)
        .filter(|v| v.is_finite())
        .collect();
    // A fold from +0.0: `Iterator::sum` of nothing is -0.0.
    let sum = finite.iter().fold(0.0, |a, b| a + b);
    let max = finite.iter().copied().reduce(f64::max);
    let samples: Vec<serde_json::Value> = selected
        .iter()
        .map(|s| json!({"labels": s.labels, "value": json_number(s.value)}))
        .collect();

    let evidence = if selected.is_empty() {
        format!("no sample of {}", series_text(&p.metric, &p.labels))
    } else {
        let mut lines: Vec<String> = selected
            .iter()
            .map(|s| {
                format!(
                    "{} {}",
                    series_text(&s.name, &s.labels),
                    value_text(s.value)
                )
            })
            .collect();
        if finite.len() < selected.len() {
            lines.push("(NaN/±Inf values are null in the data and left out of sum/max)".into());
        }
        lines.join("\n")
    };
    Ok(Observation {
        data: json!({
            "samples": samples,
            "count": selected.len(),
            "sum": sum,
            "max": max,
        }),
        evidence: trim_evidence(&evidence, EVIDENCE_LINES, EVIDENCE_CHARS),
    })
}

/// Parses a text-format exposition into flat series, sorted by name and
/// labels. `Err` says which line is not in the format.
fn parse_exposition(text: &str) -> Result<Vec<Series>, String> {
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match LineInfo::parse(line) {
            LineInfo::Sample {
                value, timestamp, ..
            } => {
                if parse_float(value).is_none() {
                    return Err(format!(
                        "line {}: value {:?} is not a number",
                        i + 1,
                        clip(value)
                    ));
                }
                if let Some(ts) = timestamp
                    && ts.parse::<i64>().is_err()
                {
                    return Err(format!(
                        "line {}: timestamp {:?} is not an integer",
                        i + 1,
                        clip(ts)
                    ));
                }
            }
            _ => return Err(format!("line {} is not a sample: {:?}", i + 1, clip(line))),
        }
    }
    let scrape =
        Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for sample in scrape.samples {
        let labels: BTreeMap<String, String> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => out.push(Series {
                name: sample.metric,
                labels,
                value: v,
            }),
            Value::Histogram(buckets) => {
                let name = format!("{}_bucket", sample.metric);
                for b in buckets {
                    let mut labels = labels.clone();
                    labels.insert("le".into(), value_text(b.less_than));
                    out.push(Series {
                        name: name.clone(),
                        labels,
                        value: b.count,
                    });
                }
            }
            Value::Summary(quantiles) => {
                for q in quantiles {
                    let mut labels = labels.clone();
                    labels.insert("quantile".into(), value_text(q.quantile));
                    out.push(Series {
                        name: sample.metric.clone(),
                        labels,
                        value: q.count,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
    Ok(out)
}

/// Label equality; `le` and `quantile` compare as numbers too (`1` ==
/// `1.0`, `+Inf` == `+inf`), since exporters write them differently.
fn label_matches(key: &str, have: Option<&String>, want: &str) -> bool {
    let Some(have) = have else {
        // A missing label equals the empty value, as in PromQL.
        return want.is_empty();
    };
    if have == want {
        return true;
    }
    if (key == "le" || key == "quantile")
        && let (Some(a), Some(b)) = (parse_float(have), parse_float(want))
    {
        return a == b;
    }
    false
}

/// A sample value as the text format writes it (`NaN`, `+Inf`, `-Inf`).
fn parse_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    if lower == "nan" {
        return Some(f64::NAN);
    }
    lower.parse::<f64>().ok()
}

pub(crate) fn value_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

/// A number for the data, null for NaN and ±Inf (JSON has neither).
pub(crate) fn json_number(v: f64) -> serde_json::Value {
    if v.is_finite() {
        json!(v)
    } else {
        serde_json::Value::Null
    }
}

/// `name{a="1",b="2"}` (just `name` without labels).
pub(crate) fn series_text(name: &str, labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

fn clip(s: &str) -> String {
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(80).collect();
        format!("{cut}…")
    } else {
        s.to_string()
    }
}
