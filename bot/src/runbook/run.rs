//! Running a runbook's checks: render placeholders, probe concurrently
//! (bounded), hold each observation to its expectations, and report in the
//! runbook's order with the first failing check named as the likely
//! bottleneck (seed 001 §3 step 2, seed 002 §4 step 3).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::expect::{evaluate, parse_condition, parse_selector};
use super::model::{Check, Missing, Runbook, Verdict};
use crate::domain::time::Millis;
use crate::probe::{self, ProbeSpec, Target};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    /// The probe could not observe (unreachable, timeout, malformed).
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Error => "error",
        }
    }

    pub fn icon(self) -> &'static str {
        match self {
            Status::Ok => "✅",
            Status::Warn => "⚠️",
            Status::Fail => "❌",
            Status::Error => "⛔",
        }
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub check_id: String,
    pub title: String,
    pub probe: &'static str,
    pub target: String,
    pub status: Status,
    /// The value the deciding expectation looked at.
    pub observed: Option<Value>,
    /// The condition that was breached (`> 100`), or the ones that held.
    pub threshold: Option<String>,
    pub meaning: Option<String>,
    pub evidence: String,
    pub duration_ms: u64,
    /// Why the probe could not observe, for `error`.
    pub error: Option<String>,
    /// The check's target is not configured: it could not run at all, so it
    /// is never named as the bottleneck (the system may be fine).
    #[serde(default)]
    pub unconfigured: bool,
    /// Alert labels the probe needs that the alert does not have: the check
    /// did not run (`runbook run --label NAME=VALUE` supplies them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_labels: Vec<String>,
    /// Every expectation that was crossed, worst first (`observed`,
    /// `threshold` and `meaning` repeat the first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breaches: Vec<Breach>,
    /// Whether the findings post shows the evidence (`show_evidence`).
    #[serde(default)]
    pub show_evidence: bool,
}

/// One crossed expectation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    pub status: Status,
    pub path: String,
    /// `> 100`, or `no data` when `missing` made absence a breach.
    pub condition: String,
    pub observed: Option<Value>,
    pub meaning: Option<String>,
}

impl Finding {
    /// The check could not run for want of configuration or input (a target,
    /// an alert label): it says nothing about the system.
    pub fn not_run(&self) -> bool {
        self.unconfigured || !self.missing_labels.is_empty()
    }
}

/// The verdict that applied: the seed's conclusion for what was observed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictOutcome {
    pub id: String,
    pub title: String,
    pub title_en: Option<String>,
    /// The action it points to, when the runbook declares one.
    pub action: Option<String>,
    pub severity: Option<String>,
    /// Why it applies, one line per condition.
    pub because: Vec<String>,
}

/// All findings of one run, in the runbook's order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub runbook_id: String,
    pub title: String,
    pub title_en: String,
    pub findings: Vec<Finding>,
    /// Index into `findings` of the first check that failed or could not
    /// observe: the likely bottleneck.
    pub bottleneck: Option<usize>,
    /// The runbook's conclusion for what was observed, if one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<VerdictOutcome>,
    pub duration_ms: u64,
}

impl Report {
    pub fn worst(&self) -> Status {
        self.findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Ok)
    }
}

/// Values placeholders can use.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    /// Labels of the alert that triggered the run.
    pub labels: BTreeMap<String, String>,
    /// `INC-7`, when run for an incident.
    pub incident: Option<String>,
    pub now: Millis,
}

/// Configured targets by name, secrets resolved.
pub type Targets = BTreeMap<String, Target>;

/// Runs every check of `rb`, at most `concurrency` at a time.
pub async fn run(rb: &Runbook, targets: &Targets, ctx: &RunContext, concurrency: usize) -> Report {
    let started = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(rb.checks.len());
    for check in rb.checks.iter().cloned() {
        let limit = limit.clone();
        let target = targets.get(check.probe.target()).cloned();
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            observe_check(&check, target.as_ref(), &ctx).await
        }));
    }
    let mut findings = Vec::with_capacity(tasks.len());
    let mut observed = BTreeMap::new();
    for (task, check) in tasks.into_iter().zip(&rb.checks) {
        let (finding, data) = match task.await {
            Ok(done) => done,
            Err(e) => (
                error_finding(check, format!("the check crashed: {e}"), 0),
                None,
            ),
        };
        if let Some(data) = data {
            observed.insert(check.id.clone(), data);
        }
        findings.push(finding);
    }
    let bottleneck = findings
        .iter()
        .position(|f| matches!(f.status, Status::Fail | Status::Error) && !f.not_run());
    let verdict = rb
        .verdicts
        .iter()
        .find_map(|v| judge_verdict(v, &findings, &observed));
    Report {
        runbook_id: rb.id.clone(),
        title: rb.title.clone(),
        title_en: rb.title_en.clone(),
        findings,
        bottleneck,
        verdict,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

/// The verdict, when every one of its conditions holds.
fn judge_verdict(
    v: &Verdict,
    findings: &[Finding],
    observed: &BTreeMap<String, Value>,
) -> Option<VerdictOutcome> {
    let mut because = Vec::new();
    for cond in &v.when {
        for check in &cond.checks {
            let f = findings.iter().find(|f| &f.check_id == check)?;
            if f.not_run() {
                return None;
            }
            if let Some(want) = &cond.status {
                let met = match want.as_str() {
                    "ok" => f.status == Status::Ok,
                    "warn" => matches!(f.status, Status::Warn | Status::Fail),
                    "fail" => f.status == Status::Fail,
                    "error" => f.status == Status::Error,
                    _ => false,
                };
                if !met {
                    return None;
                }
            }
            if let (Some(path), Some(is)) = (&cond.path, &cond.is) {
                let selector = parse_selector(path).ok()?;
                let value = evaluate(observed.get(check)?, &selector)?;
                if !parse_condition(is).ok()?.holds(&value) {
                    return None;
                }
                because.push(format!("{check}: {path} = {} ({is})", compact(&value)));
            }
        }
        if let Some(want) = &cond.status {
            because.push(match cond.checks.len() {
                n if n > 3 => format!("all {n} of {}…: {want}", cond.checks[..2].join(", ")),
                _ => format!("{}: {want}", cond.checks.join(", ")),
            });
        }
    }
    Some(VerdictOutcome {
        id: v.id.clone(),
        title: v.title.clone(),
        title_en: v.title_en.clone(),
        action: v.action.clone(),
        severity: v.severity.clone(),
        because,
    })
}

/// A value as a short text: strings without quotes.
fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn error_finding(check: &Check, error: String, duration_ms: u64) -> Finding {
    Finding {
        check_id: check.id.clone(),
        title: check.title.clone(),
        probe: check.probe.kind(),
        target: check.probe.target().to_string(),
        status: Status::Error,
        observed: None,
        threshold: None,
        meaning: None,
        evidence: String::new(),
        duration_ms,
        error: Some(error),
        unconfigured: false,
        missing_labels: Vec::new(),
        breaches: Vec::new(),
        show_evidence: false,
    }
}

/// Probes one check and judges it.
pub async fn run_check(check: &Check, target: Option<&Target>, ctx: &RunContext) -> Finding {
    observe_check(check, target, ctx).await.0
}

/// Probes one check and judges it; also returns what the probe observed.
async fn observe_check(
    check: &Check,
    target: Option<&Target>,
    ctx: &RunContext,
) -> (Finding, Option<Value>) {
    let started = Instant::now();
    let Some(target) = target else {
        let t = check.probe.target();
        let finding = Finding {
            unconfigured: true,
            ..error_finding(
                check,
                format!("target {t:?} is not configured: add [targets.{t}] to the config"),
                0,
            )
        };
        return (finding, None);
    };
    let spec = match render_spec(&check.probe, ctx) {
        Ok(s) => s,
        Err(Unrendered::MissingLabels(names)) => {
            let list = names.join(", ");
            let finding = Finding {
                missing_labels: names.clone(),
                ..error_finding(
                    check,
                    format!(
                        "not run: the alert has no label {list}, which the probe needs (runbook run: --label {}=…)",
                        names[0]
                    ),
                    0,
                )
            };
            return (finding, None);
        }
        Err(Unrendered::Other(e)) => return (error_finding(check, e, 0), None),
    };
    let observation = probe::observe(&spec, target, Duration::from_millis(check.timeout_ms)).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let observation = match observation {
        Ok(o) => o,
        Err(e) => return (error_finding(check, e.to_string(), duration_ms), None),
    };
    let mut finding = judge(check, &observation.data);
    finding.target = target.name.clone();
    finding.evidence = observation.evidence;
    finding.duration_ms = duration_ms;
    finding.show_evidence = match check.show_evidence.as_deref() {
        Some("always") => true,
        Some("never") => false,
        Some(_) => finding.status != Status::Ok,
        None => check.informational || finding.status != Status::Ok,
    };
    (finding, Some(observation.data))
}

/// Holds an observation to the check's expectations: every crossed
/// threshold is a breach; a value that is not there is "no data" (an
/// error) unless the expectation's `missing` says what absence means.
pub fn judge(check: &Check, data: &Value) -> Finding {
    let mut finding = Finding {
        status: Status::Ok,
        evidence: String::new(),
        error: None,
        ..error_finding(check, String::new(), 0)
    };
    let mut held = Vec::new();
    let mut no_data = Vec::new();
    let mut first_value = None;
    for e in &check.expect {
        let selector = match parse_selector(&e.path) {
            Ok(s) => s,
            Err(m) => {
                no_data.push(format!("{}: {m}", e.path));
                continue;
            }
        };
        let observed = match (evaluate(data, &selector), &e.missing) {
            (Some(v), _) => v,
            (None, Some(Missing::Number(n))) => serde_json::json!(n),
            (None, Some(Missing::Word(w))) => {
                let status = match w.as_str() {
                    "fail" => Status::Fail,
                    "warn" => Status::Warn,
                    _ => {
                        held.push(format!("{}: no data, which counts as ok", e.path));
                        continue;
                    }
                };
                finding.breaches.push(Breach {
                    status,
                    path: e.path.clone(),
                    condition: "no data".into(),
                    observed: None,
                    meaning: e.meaning.clone(),
                });
                continue;
            }
            (None, None) => {
                no_data.push(e.path.clone());
                continue;
            }
        };
        first_value.get_or_insert_with(|| observed.clone());
        let crossed = [(Status::Fail, &e.fail_if), (Status::Warn, &e.warn_if)]
            .into_iter()
            .find_map(|(status, cond)| {
                let cond = cond.as_ref()?;
                let condition = parse_condition(cond).ok()?;
                condition.holds(&observed).then(|| (status, cond.clone()))
            });
        match crossed {
            Some((status, condition)) => finding.breaches.push(Breach {
                status,
                path: e.path.clone(),
                condition,
                observed: Some(observed),
                meaning: e.meaning.clone(),
            }),
            None => {
                for cond in [&e.fail_if, &e.warn_if].into_iter().flatten() {
                    held.push(format!("{} not {cond}", e.path));
                }
            }
        }
    }
    // Worst first, in the runbook's order within a status.
    finding
        .breaches
        .sort_by_key(|b| std::cmp::Reverse(b.status));
    finding.status = finding
        .breaches
        .first()
        .map(|b| b.status)
        .unwrap_or(Status::Ok);
    if let Some(b) = finding.breaches.first() {
        finding.observed = b.observed.clone();
        finding.threshold = Some(format!("{} {}", b.path, b.condition));
        finding.meaning = b.meaning.clone();
    } else {
        finding.observed = first_value;
        if !held.is_empty() {
            finding.threshold = Some(held.join(", "));
        }
    }
    if !no_data.is_empty() {
        let why = if data.get("no_data") == Some(&Value::Bool(true)) {
            "the answer holds no data"
        } else {
            "no value"
        };
        let message = format!("{why} at {}", no_data.join(", "));
        // An observed failure says more than a value that is not there;
        // anything less cannot be called ok while a value is unknown.
        if finding.status < Status::Fail {
            finding.status = Status::Error;
            finding.error = Some(format!("no data: {message}"));
        } else {
            finding.threshold = Some(format!(
                "{}; and {message}",
                finding.threshold.take().unwrap_or_default()
            ));
        }
    }
    finding
}

/// Why a probe spec could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unrendered {
    /// The alert lacks these labels.
    MissingLabels(Vec<String>),
    Other(String),
}

/// Alert labels a template string names (`labels.x`, `labels["x"]`).
pub fn label_references(template: &str) -> Vec<String> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r#"labels\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*["']([^"']+)["']\s*\])"#,
        )
        .expect("a constant regex")
    });
    let mut out: Vec<String> = re
        .captures_iter(template)
        .filter_map(|c| c.get(1).or(c.get(2)).map(|m| m.as_str().to_string()))
        .collect();
    out.dedup();
    out
}

/// Renders `{{ … }}` placeholders in every string of the spec. Label values
/// pasted into PromQL are escaped so a label cannot break out of a string.
pub fn render_spec(spec: &ProbeSpec, ctx: &RunContext) -> Result<ProbeSpec, Unrendered> {
    let promql = matches!(spec, ProbeSpec::Prometheus(_));
    let labels: BTreeMap<String, String> = ctx
        .labels
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                if promql {
                    v.replace('\\', "\\\\").replace('"', "\\\"")
                } else {
                    v.clone()
                },
            )
        })
        .collect();
    let dt = ctx.now.to_datetime();
    let vars = minijinja::context! {
        ym => dt.format("%Y-%m").to_string(),
        today => dt.format("%Y-%m-%d").to_string(),
        now => ctx.now.to_rfc3339(),
        labels => labels,
        incident => ctx.incident.clone(),
    };
    let mut env = minijinja::Environment::new();
    // A label the alert does not have is an error, never an empty string
    // (`| default("…")` still works for a label that may be absent).
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    fn walk(
        v: &mut Value,
        env: &minijinja::Environment<'_>,
        vars: &minijinja::Value,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), Unrendered> {
        match v {
            Value::String(s) if s.contains("{{") || s.contains("{%") => {
                *s = env.render_str(s, vars).map_err(|e| {
                    let mut missing: Vec<String> = label_references(s)
                        .into_iter()
                        .filter(|l| !labels.contains_key(l))
                        .collect();
                    missing.sort();
                    missing.dedup();
                    if missing.is_empty() {
                        Unrendered::Other(format!("placeholder in {s:?}: {e}"))
                    } else {
                        Unrendered::MissingLabels(missing)
                    }
                })?;
            }
            Value::Object(m) => {
                for v in m.values_mut() {
                    walk(v, env, vars, labels)?;
                }
            }
            Value::Array(a) => {
                for v in a {
                    walk(v, env, vars, labels)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let other = |e: serde_json::Error| Unrendered::Other(e.to_string());
    let mut value = serde_json::to_value(spec).map_err(other)?;
    walk(&mut value, &env, &vars, &ctx.labels)?;
    serde_json::from_value(value).map_err(other)
}
