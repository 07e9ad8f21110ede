//! Running a runbook's checks: render placeholders, probe concurrently
//! (bounded), hold each observation to its expectations, and report in the
//! runbook's order with the first failing check named as the likely
//! bottleneck (seed 001 §3 step 2, seed 002 §4 step 3).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::expect::{parse_condition, select};
use super::model::{Check, Runbook};
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
            run_check(&check, target.as_ref(), &ctx).await
        }));
    }
    let mut findings = Vec::with_capacity(tasks.len());
    for (task, check) in tasks.into_iter().zip(&rb.checks) {
        findings.push(match task.await {
            Ok(f) => f,
            Err(e) => error_finding(check, format!("the check crashed: {e}"), 0),
        });
    }
    let bottleneck = findings
        .iter()
        .position(|f| matches!(f.status, Status::Fail | Status::Error) && !f.unconfigured);
    Report {
        runbook_id: rb.id.clone(),
        title: rb.title.clone(),
        title_en: rb.title_en.clone(),
        findings,
        bottleneck,
        duration_ms: started.elapsed().as_millis() as u64,
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
    }
}

/// Probes one check and judges it.
pub async fn run_check(check: &Check, target: Option<&Target>, ctx: &RunContext) -> Finding {
    let started = Instant::now();
    let Some(target) = target else {
        let t = check.probe.target();
        return Finding {
            unconfigured: true,
            ..error_finding(
                check,
                format!("target {t:?} is not configured: add [targets.{t}] to the config"),
                0,
            )
        };
    };
    let spec = match render_spec(&check.probe, ctx) {
        Ok(s) => s,
        Err(e) => return error_finding(check, e, 0),
    };
    let observation = probe::observe(&spec, target, Duration::from_millis(check.timeout_ms)).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let observation = match observation {
        Ok(o) => o,
        Err(e) => return error_finding(check, e.to_string(), duration_ms),
    };
    let mut finding = Finding {
        check_id: check.id.clone(),
        title: check.title.clone(),
        probe: check.probe.kind(),
        target: target.name.clone(),
        status: Status::Ok,
        observed: None,
        threshold: None,
        meaning: None,
        evidence: observation.evidence.clone(),
        duration_ms,
        error: None,
        unconfigured: false,
    };
    let mut held = Vec::new();
    for e in &check.expect {
        let observed = select(&observation.data, &e.path).cloned();
        for (status, cond) in [(Status::Fail, &e.fail_if), (Status::Warn, &e.warn_if)] {
            let Some(cond) = cond else { continue };
            let Ok(condition) = parse_condition(cond) else {
                continue;
            };
            let breached = match &observed {
                Some(v) => condition.holds(v),
                // A missing value cannot be judged: say so rather than pass.
                None => {
                    if finding.status < Status::Error {
                        finding.status = Status::Error;
                        finding.error = Some(format!("the answer has no value at {:?}", e.path));
                    }
                    false
                }
            };
            if breached {
                if status > finding.status {
                    finding.status = status;
                    finding.observed = observed.clone();
                    finding.threshold = Some(format!("{} {cond}", e.path));
                    finding.meaning = e.meaning.clone();
                }
                break; // fail_if breached: no need to look at warn_if
            } else {
                held.push(format!("{} not {cond}", e.path));
            }
        }
        if finding.observed.is_none() && finding.status == Status::Ok {
            finding.observed = observed;
        }
    }
    if finding.status == Status::Ok && !held.is_empty() {
        finding.threshold = Some(held.join(", "));
    }
    finding
}

/// Renders `{{ … }}` placeholders in every string of the spec. Label values
/// pasted into PromQL are escaped so a label cannot break out of a string.
pub fn render_spec(spec: &ProbeSpec, ctx: &RunContext) -> Result<ProbeSpec, String> {
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
    let env = minijinja::Environment::new();
    fn walk(
        v: &mut Value,
        env: &minijinja::Environment<'_>,
        vars: &minijinja::Value,
    ) -> Result<(), String> {
        match v {
            Value::String(s) if s.contains("{{") || s.contains("{%") => {
                *s = env
                    .render_str(s, vars)
                    .map_err(|e| format!("placeholder in {s:?}: {e}"))?;
            }
            Value::Object(m) => {
                for v in m.values_mut() {
                    walk(v, env, vars)?;
                }
            }
            Value::Array(a) => {
                for v in a {
                    walk(v, env, vars)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut value = serde_json::to_value(spec).map_err(|e| e.to_string())?;
    walk(&mut value, &env, &vars)?;
    serde_json::from_value(value).map_err(|e| e.to_string())
}
