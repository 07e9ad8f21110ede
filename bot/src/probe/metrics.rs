//! The `metrics` probe. See [`MetricsProbe`] for the data it observes.
//!
//! The exposition is read a sample line at a time, each line as written:
//! a histogram's `NAME_bucket{le=…}`, `NAME_sum` and `NAME_count`, a
//! summary's `NAME{quantile=…}`, are series like any other, so `# TYPE`
//! lines are not needed. A body that is not the text format (an HTML error
//! page, JSON) is reported as malformed, naming the line, instead of "no
//! sample".
//!
//! Why not the `prometheus-parse` crate, used here before: it split label
//! sets at every comma and kept escapes as written, so
//! `{workflow_id="a,b",reason="x"}` read as `{workflow_id="a"}`, and a
//! `}` inside a value made the line unreadable. The other crates for the
//! format were LGPL or unmaintained; the line grammar is small.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::http::{
    EVIDENCE_CHARS, EVIDENCE_LINES, display_url, get_once, header_map, join_url, parse_url, redact,
    status_line,
};
use super::{Observation, ProbeError, Target, TargetSettings};
use crate::text::trim_lines;

/// `kind = "metrics"`: scrape a `/metrics` endpoint in Prometheus text
/// format and select one metric by name and labels (seed 004 §2:
/// `worker_dlq_total`).
///
/// Data: `{"samples": [{"labels": {…}, "value": 3.0}], "count": 1, "sum":
/// 3.0, "max": 3.0, "no_data": false, "by_metric": {"NAME": {"sum": 3.0,
/// "count": 1, "delta": 2.0}}}` (`no_data` true and sum/max null when
/// nothing matched: a metric the page does not carry is not a zero).
/// `by_metric` holds `metric` and each of `also`; `delta` (the growth over
/// `window_s`) only with a window, null for a metric missing from either
/// scrape.
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
    /// More metrics read from the same page with the same label matchers,
    /// into `by_metric` (seed 004: `worker_success_total` beside
    /// `worker_failure_total`), so one check can compare them.
    #[serde(default)]
    pub also: Vec<String>,
    /// Scrape twice, this many seconds apart, and report each metric's
    /// growth in between as `by_metric.NAME.delta`: how fast a counter
    /// grows, without Prometheus.
    #[serde(default)]
    pub window_s: Option<u64>,
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
    let scrape = || async {
        let (status, raw) =
            get_once(target, &url, headers.clone(), timeout, METRICS_BODY_CAP).await?;
        if !status.is_success() {
            return Err(ProbeError::Failed(
                name.clone(),
                format!("{} from {}", status_line(status), display_url(&url)),
            ));
        }
        let text = redact(&String::from_utf8_lossy(&raw), target);
        parse_exposition(&text).map_err(|why| {
            ProbeError::Malformed(
                name.clone(),
                format!("{} is not Prometheus text format: {why}", display_url(&url)),
            )
        })
    };
    let (first, all) = match p.window_s {
        Some(w) => {
            let first = scrape().await?;
            tokio::time::sleep(Duration::from_secs(w)).await;
            (Some(first), scrape().await?)
        }
        None => (None, scrape().await?),
    };
    let matching = |series: &[Series], metric: &str| -> Option<(f64, usize)> {
        let values: Vec<f64> = series
            .iter()
            .filter(|s| {
                s.name == metric
                    && p.labels
                        .iter()
                        .all(|(k, want)| label_matches(k, s.labels.get(k), want))
            })
            .map(|s| s.value)
            .filter(|v| v.is_finite())
            .collect();
        (!values.is_empty()).then(|| (values.iter().fold(0.0, |a, b| a + b), values.len()))
    };
    let mut by_metric = serde_json::Map::new();
    let mut growth = Vec::new();
    for metric in std::iter::once(&p.metric).chain(&p.also) {
        let now = matching(&all, metric);
        let delta = match (&first, now) {
            (Some(first), Some((sum, _))) => {
                matching(first, metric).map(|(before, _)| sum - before)
            }
            _ => None,
        };
        if let (Some(w), Some(d)) = (p.window_s, delta) {
            growth.push(format!("{metric} +{} over {w} s", value_text(d)));
        }
        by_metric.insert(
            metric.clone(),
            json!({
                "sum": now.map(|(s, _)| json_number(s)),
                "count": now.map(|(_, n)| n).unwrap_or(0),
                "delta": delta.map(json_number),
            }),
        );
    }
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

    let mut evidence = if selected.is_empty() {
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
    if !growth.is_empty() {
        evidence.push('\n');
        evidence.push_str(&growth.join("\n"));
    }
    Ok(Observation {
        data: json!({
            "by_metric": by_metric,
            // A metric the page does not carry is no data, not zero.
            "no_data": selected.is_empty(),
            "samples": samples,
            "count": selected.len(),
            "sum": (!selected.is_empty()).then_some(sum),
            "max": max,
        }),
        evidence: trim_lines(&evidence, EVIDENCE_LINES, EVIDENCE_CHARS),
    })
}

/// Parses a text-format exposition into flat series, sorted by name and
/// labels. `Err` says which line is not in the format, and why.
fn parse_exposition(text: &str) -> Result<Vec<Series>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let series = parse_sample(line)
            .map_err(|why| format!("line {} is not a sample ({why}): {:?}", i + 1, clip(line)))?;
        out.push(series);
    }
    out.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
    Ok(out)
}

/// One sample line: `name[{label="value",…}] value [timestamp]`.
fn parse_sample(line: &str) -> Result<Series, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_name(name, true) {
        return Err(format!("{:?} is not a metric name", clip(name)));
    }
    let mut rest = line[name_end..].trim_start();
    let mut labels = BTreeMap::new();
    if let Some(set) = rest.strip_prefix('{') {
        rest = parse_labels(set, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value =
        parse_float(value).ok_or_else(|| format!("value {:?} is not a number", clip(value)))?;
    if let Some(ts) = fields.next()
        && ts.parse::<i64>().is_err()
    {
        return Err(format!("timestamp {:?} is not an integer", clip(ts)));
    }
    if fields.next().is_some() {
        return Err("more after the timestamp".into());
    }
    Ok(Series {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Reads a label set after its `{` into `labels`; the text after its `}`.
/// Values are unescaped (`\\`, `\"`, `\n`).
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let eq = s.find('=').ok_or("a label without =")?;
        let name = s[..eq].trim();
        if !is_name(name, false) {
            return Err(format!("{:?} is not a label name", clip(name)));
        }
        let quoted = s[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("the value of label {name} is not quoted"))?;
        let unclosed = || format!("the value of label {name} has no closing quote");
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err(unclosed()),
                },
                Some((_, c)) => value.push(c),
                None => return Err(unclosed()),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} is given twice"));
        }
        s = quoted[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err(format!("a , or }} must follow the value of label {name}"));
        }
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*` for metric names; labels take no `:`.
fn is_name(s: &str, colon: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (colon && c == ':') || (!first && c.is_ascii_digit())
    };
    let mut chars = s.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
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

#[cfg(test)]
mod tests {
    use super::{Series, parse_exposition};

    fn one(line: &str) -> Series {
        let mut all = parse_exposition(line).expect("a sample");
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    #[test]
    fn label_values_keep_commas_braces_and_spaces_and_lose_their_escapes() {
        let s =
            one(r#"worker_dlq_total{workflow_id="a,b", reason="x=y}", note="say \"hi\" \\ \n"} 3"#);

        assert_eq!(s.name, "worker_dlq_total");
        assert_eq!(s.labels["workflow_id"], "a,b");
        assert_eq!(s.labels["reason"], "x=y}");
        assert_eq!(s.labels["note"], "say \"hi\" \\ \n");
        assert_eq!(s.labels.len(), 3);
        assert_eq!(s.value, 3.0);
    }

    #[test]
    fn samples_with_no_labels_a_trailing_comma_special_values_or_a_timestamp_are_read() {
        assert_eq!(one("up 1").value, 1.0);
        assert_eq!(one("m{a=\"1\",} 2").labels["a"], "1");
        assert_eq!(one("m{} +Inf").value, f64::INFINITY);
        assert!(one("m NaN").value.is_nan());
        assert_eq!(one("m -2.5e3 1700000000000").value, -2500.0);
        assert_eq!(one("ns:m 1").name, "ns:m");
    }

    #[test]
    fn a_line_out_of_the_format_is_named_with_the_reason() {
        let cases = [
            ("<html>", "is not a metric name"),
            ("m{a=1} 2", "the value of label a is not quoted"),
            ("m{a=\"1} 2", "the value of label a has no closing quote"),
            (
                "m{a=\"1\" b=\"2\"} 3",
                "a , or } must follow the value of label a",
            ),
            ("m{a=\"1\",a=\"2\"} 3", "label a is given twice"),
            ("m{0a=\"1\"} 3", "is not a label name"),
            ("m{a=\"1\"}", "no value"),
            ("m three", "value \"three\" is not a number"),
            ("m 1 soon", "timestamp \"soon\" is not an integer"),
            ("m 1 2 3", "more after the timestamp"),
        ];
        for (line, why) in cases {
            let text = format!("# TYPE m gauge\nok 1\n{line}\n");
            let e = parse_exposition(&text).expect_err(line);
            assert!(e.starts_with("line 3 is not a sample ("), "{line}: {e}");
            assert!(e.contains(why), "{line}: {e}");
        }
    }
}
