//! The `prometheus` probe. See [`PrometheusProbe`] for the data it observes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{ACCEPT, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::http::{
    EVIDENCE_CHARS, EVIDENCE_LINES, display_url, get_once, header_map, join_url, parse_url,
    status_line,
};
use super::metrics::{json_number, series_text, value_text};
use super::{Observation, ProbeError, Target, TargetSettings};
use crate::text::trim_lines;

/// `kind = "prometheus"`: a PromQL query against a Prometheus HTTP API
/// (`/api/v1/query`, or `/api/v1/query_range` for a trend).
///
/// Data, instant: `{"series": [{"labels": {…}, "value": 0.02}], "count": 1,
/// "min": …, "max": …, "sum": …, "no_data": false}` (min/max/sum null and
/// `no_data` true when there is no series: every expectation then sees no
/// value, unless it says what absence means with `missing`).
/// Range: each series also has `"values": [[unix_s, v], …]`, `"first"`,
/// `"last"` and `"delta"` (last − first); `value` is the last sample.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusProbe {
    /// A `prometheus` target.
    pub target: String,
    pub query: String,
    /// Set for a range query ending now.
    #[serde(default)]
    pub range: Option<RangeSpec>,
}

/// A range query's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RangeSpec {
    /// How far back from now, in seconds.
    pub duration_s: u64,
    /// Resolution, in seconds.
    pub step_s: u64,
}

/// The most of an API answer the probe reads.
const API_BODY_CAP: usize = 16 * 1024 * 1024;

/// The documented envelope of `/api/v1/query` and `/api/v1/query_range`.
#[derive(Debug, Deserialize)]
struct ApiAnswer {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// `[unix_s, "value"]`.
type ApiSample = (f64, String);

#[derive(Debug, Deserialize)]
struct ApiInstant {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// Absent for a native histogram (`histogram` instead).
    #[serde(default)]
    value: Option<ApiSample>,
}

#[derive(Debug, Deserialize)]
struct ApiRange {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<ApiSample>,
}

/// Observes `p` on `target`.
pub async fn observe(
    p: &PrometheusProbe,
    target: &Target,
    timeout: Duration,
) -> Result<Observation, ProbeError> {
    let name = &target.name;
    let TargetSettings::Prometheus { url: base } = &target.settings else {
        return Err(ProbeError::Config(
            name.clone(),
            format!(
                "the prometheus probe needs a prometheus target, not {}",
                target.settings.kind()
            ),
        ));
    };
    let mut url = match p.range {
        None => parse_url(name, &join_url(base, "/api/v1/query"))?,
        Some(_) => parse_url(name, &join_url(base, "/api/v1/query_range"))?,
    };
    {
        let mut pairs = url.query_pairs_mut();
        pairs.append_pair("query", &p.query);
        if let Some(range) = p.range {
            if range.step_s == 0 {
                return Err(ProbeError::Config(
                    name.clone(),
                    "a range query needs step_s of at least 1".into(),
                ));
            }
            let end = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            let start = end - range.duration_s as f64;
            pairs.append_pair("start", &format!("{start:.3}"));
            pairs.append_pair("end", &format!("{end:.3}"));
            pairs.append_pair("step", &range.step_s.to_string());
        }
        // Prometheus stops evaluating when the probe would stop waiting.
        pairs.append_pair("timeout", &format!("{}ms", timeout.as_millis().max(1)));
    }
    let mut headers = header_map(target, &BTreeMap::new(), &BTreeMap::new())?;
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let (status, raw) = get_once(target, &url, headers, timeout, API_BODY_CAP).await?;

    let answer: ApiAnswer = match serde_json::from_slice(&raw) {
        Ok(a) => a,
        Err(e) if status.is_success() => {
            return Err(ProbeError::Malformed(
                name.clone(),
                format!(
                    "{} did not answer the Prometheus API's JSON: {e}",
                    display_url(&url)
                ),
            ));
        }
        Err(_) => {
            return Err(ProbeError::Failed(
                name.clone(),
                format!("{} from {}", status_line(status), display_url(&url)),
            ));
        }
    };
    if answer.status == "error" {
        return Err(ProbeError::Failed(
            name.clone(),
            format!(
                "{}: {}",
                answer.error_type.as_deref().unwrap_or("error"),
                answer.error.as_deref().unwrap_or("(no message)")
            ),
        ));
    }
    if answer.status != "success" {
        return Err(ProbeError::Malformed(
            name.clone(),
            format!("unknown status {:?}", answer.status),
        ));
    }
    let Some(data) = answer.data else {
        return Err(ProbeError::Malformed(
            name.clone(),
            "a success answer without data".into(),
        ));
    };
    let malformed = |what: String| ProbeError::Malformed(name.clone(), what);

    let mut series: Vec<serde_json::Value> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut last_values: Vec<f64> = Vec::new();
    match data.result_type.as_str() {
        "vector" => {
            let result: Vec<ApiInstant> = serde_json::from_value(data.result)
                .map_err(|e| malformed(format!("vector result: {e}")))?;
            for s in result {
                let v = match &s.value {
                    Some((_, text)) => parse_value(text)
                        .ok_or_else(|| malformed(format!("value {text:?} is not a number")))?,
                    None => f64::NAN,
                };
                lines.push(format!("{} {}", labels_text(&s.metric), value_text(v)));
                series.push(json!({"labels": s.metric, "value": json_number(v)}));
                last_values.push(v);
            }
        }
        "scalar" => {
            let (_, text): ApiSample = serde_json::from_value(data.result)
                .map_err(|e| malformed(format!("scalar result: {e}")))?;
            let v = parse_value(&text)
                .ok_or_else(|| malformed(format!("value {text:?} is not a number")))?;
            lines.push(format!("scalar {}", value_text(v)));
            series.push(json!({"labels": {}, "value": json_number(v)}));
            last_values.push(v);
        }
        "matrix" => {
            let result: Vec<ApiRange> = serde_json::from_value(data.result)
                .map_err(|e| malformed(format!("matrix result: {e}")))?;
            for s in result {
                let mut values = Vec::with_capacity(s.values.len());
                let mut parsed = Vec::with_capacity(s.values.len());
                for (ts, text) in &s.values {
                    let v = parse_value(text)
                        .ok_or_else(|| malformed(format!("value {text:?} is not a number")))?;
                    values.push(json!([ts, json_number(v)]));
                    parsed.push(v);
                }
                let first = parsed.first().copied().unwrap_or(f64::NAN);
                let last = parsed.last().copied().unwrap_or(f64::NAN);
                let delta = last - first;
                lines.push(format!(
                    "{} {} (first {}, delta {}, {} samples)",
                    labels_text(&s.metric),
                    value_text(last),
                    value_text(first),
                    value_text(delta),
                    parsed.len()
                ));
                series.push(json!({
                    "labels": s.metric,
                    "value": json_number(last),
                    "values": values,
                    "first": json_number(first),
                    "last": json_number(last),
                    "delta": json_number(delta),
                }));
                last_values.push(last);
            }
        }
        other => {
            return Err(ProbeError::Failed(
                name.clone(),
                format!("the query returned a {other}, not numbers"),
            ));
        }
    }

    let finite: Vec<f64> = last_values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let min = finite.iter().copied().reduce(f64::min);
    let max = finite.iter().copied().reduce(f64::max);
    let sum = (!finite.is_empty()).then(|| finite.iter().fold(0.0, |a, b| a + b));

    if lines.is_empty() {
        lines.push(format!("no series for {}", p.query));
    }
    if finite.len() < last_values.len() {
        lines.push("(NaN/±Inf values are null in the data and left out of min/max/sum)".into());
    }
    for w in &answer.warnings {
        lines.push(format!("warning: {w}"));
    }
    Ok(Observation {
        data: json!({
            // No series is no data, not zero: expectations say what it
            // means (`missing`), or the check cannot be called ok.
            "no_data": series.is_empty(),
            "series": series,
            "count": series.len(),
            "min": min,
            "max": max,
            "sum": sum,
        }),
        evidence: trim_lines(&lines.join("\n"), EVIDENCE_LINES, EVIDENCE_CHARS),
    })
}

/// A value as the API writes it: a decimal string, `NaN`, `+Inf`, `-Inf`.
fn parse_value(s: &str) -> Option<f64> {
    let lower = s.trim().to_ascii_lowercase();
    if lower == "nan" {
        return Some(f64::NAN);
    }
    lower.parse::<f64>().ok()
}

/// `name{job="x"}` when the series has a `__name__`, `{job="x"}` otherwise.
fn labels_text(metric: &BTreeMap<String, String>) -> String {
    let mut labels = metric.clone();
    let name = labels.remove("__name__").unwrap_or_default();
    let text = series_text(&name, &labels);
    if text.is_empty() { "{}".into() } else { text }
}
