//! Loading runbooks (bundled in the binary, plus directories from config)
//! and linting them: unknown fields, unknown targets, bad placeholders,
//! conditions and regexes, missing thresholds, duplicate ids — each with
//! its file and, where it can be found, its line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::Regex;

use super::expect::{parse_condition, parse_selector};
use super::model::{
    ACTION_KINDS, ActionDecl, MISSING_WORDS, Missing, RETRY_PLANS, Runbook, SHOW_EVIDENCE, TRENDS,
    VERDICT_STATUSES,
};
use crate::action::RunSpec;
use crate::action::nats_publish::NatsSource;
use crate::probe::{ProbeSpec, TargetSettings};

mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled_runbooks.rs"));
}

/// Where the runbooks come from.
pub fn bundled_sources() -> Vec<(String, String)> {
    bundled::BUNDLED
        .iter()
        .map(|(p, t)| (format!("bundled:{p}"), t.to_string()))
        .collect()
}

/// One problem found by the linter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
    /// A warning leaves the runbook loaded; anything else leaves it out.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub warning: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.warning { "warning: " } else { "" };
        match self.line {
            Some(l) => write!(f, "{}:{l}: {kind}{}", self.file, self.message),
            None => write!(f, "{}: {kind}{}", self.file, self.message),
        }
    }
}

/// A compiled label matcher.
#[derive(Debug, Clone)]
enum Matcher {
    Eq(String, String),
    Ne(String, String),
    Re(String, Regex),
    NotRe(String, Regex),
}

/// A runbook ready to match and run.
#[derive(Debug, Clone)]
pub struct Entry {
    pub runbook: Arc<Runbook>,
    /// `bundled:001-…/x.toml` or a path.
    pub file: String,
    matchers: Vec<Matcher>,
}

impl Entry {
    /// Whether an alert with these labels triggers this runbook.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let m = &self.runbook.matcher;
        if m.alertname.is_empty() && m.labels.is_empty() {
            return false; // a runbook without match rules runs by hand only
        }
        let name = labels.get("alertname").map(String::as_str).unwrap_or("");
        if !m.alertname.is_empty() && !m.alertname.iter().any(|a| a == name) {
            return false;
        }
        self.matchers.iter().all(|mt| {
            let get = |n: &str| labels.get(n).map(String::as_str).unwrap_or("");
            match mt {
                Matcher::Eq(n, v) => get(n) == v,
                Matcher::Ne(n, v) => get(n) != v,
                Matcher::Re(n, r) => r.is_match(get(n)),
                Matcher::NotRe(n, r) => !r.is_match(get(n)),
            }
        })
    }
}

/// The runbooks the bot knows.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub entries: Vec<Entry>,
}

impl Catalog {
    /// Parses and lints `sources` (name, text). Runbooks with errors are
    /// left out and their problems returned; `targets`, when given, are
    /// checked too.
    pub fn build(
        sources: &[(String, String)],
        targets: Option<&BTreeMap<String, TargetSettings>>,
    ) -> (Catalog, Vec<Problem>) {
        Catalog::build_checked(sources, targets, None)
    }

    /// [`Catalog::build`], also holding the actions' `command` names to
    /// `commands` (the configuration's `[actions.commands.*]`) when given.
    pub fn build_checked(
        sources: &[(String, String)],
        targets: Option<&BTreeMap<String, TargetSettings>>,
        commands: Option<&BTreeSet<String>>,
    ) -> (Catalog, Vec<Problem>) {
        let mut problems = Vec::new();
        let mut entries = Vec::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (file, text) in sources {
            let runbook = match toml::from_str::<Runbook>(text) {
                Ok(r) => r,
                Err(_) => {
                    // Every structural problem of the file, not the first.
                    let (found, _) = crate::toml_errors::structural::<Runbook>(text);
                    problems.extend(found.into_iter().map(|f| Problem {
                        file: file.clone(),
                        line: f.line,
                        message: f.message,
                        warning: false,
                    }));
                    continue;
                }
            };
            let mut own = lint(&runbook, file, text, targets);
            own.extend(lint_actions(&runbook, file, text, targets, commands));
            if let Some(first) = seen.get(&runbook.id) {
                own.push(Problem {
                    file: file.clone(),
                    line: find_line(text, &format!("id = \"{}\"", runbook.id)),
                    message: format!("runbook id {:?} is already used by {first}", runbook.id),
                    warning: false,
                });
            }
            let matchers = compile_matchers(&runbook);
            let (warnings, errors): (Vec<Problem>, Vec<Problem>) =
                own.into_iter().partition(|p| p.warning);
            let own = errors;
            problems.extend(warnings);
            if own.is_empty()
                && let Ok(matchers) = matchers
            {
                seen.insert(runbook.id.clone(), file.clone());
                entries.push(Entry {
                    runbook: Arc::new(runbook),
                    file: file.clone(),
                    matchers,
                });
            } else {
                problems.extend(own);
            }
        }
        (Catalog { entries }, problems)
    }

    /// Bundled runbooks plus every `*.toml` under `dirs`.
    pub fn load(
        bundled: bool,
        dirs: &[PathBuf],
        targets: Option<&BTreeMap<String, TargetSettings>>,
    ) -> (Catalog, Vec<Problem>) {
        let mut sources = if bundled {
            bundled_sources()
        } else {
            Vec::new()
        };
        let mut problems = Vec::new();
        for dir in dirs {
            read_dir(dir, &mut sources, &mut problems);
        }
        let (catalog, more) = Catalog::build(&sources, targets);
        problems.extend(more);
        (catalog, problems)
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.runbook.id == id)
    }

    /// The first runbook (in load order) whose rules match the labels.
    pub fn for_alert(&self, labels: &BTreeMap<String, String>) -> Option<&Entry> {
        self.entries.iter().find(|e| e.matches(labels))
    }
}

/// Reads `*.toml` files under `path` (a file or a directory, recursively).
pub fn read_dir(path: &Path, out: &mut Vec<(String, String)>, problems: &mut Vec<Problem>) {
    if path.is_file() {
        match std::fs::read_to_string(path) {
            Ok(t) => out.push((path.display().to_string(), t)),
            Err(e) => problems.push(Problem {
                file: path.display().to_string(),
                line: None,
                message: format!("cannot read: {e}"),
                warning: false,
            }),
        }
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem {
                file: path.display().to_string(),
                line: None,
                message: format!("cannot read directory: {e}"),
                warning: false,
            });
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        let runbook_file = p.extension().is_some_and(|e| e == "toml")
            && p.file_name().is_some_and(|n| n != "targets.example.toml");
        if p.is_dir() || runbook_file {
            read_dir(&p, out, problems);
        }
    }
}

fn find_line(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// Line of `needle` at or after the line holding `anchor` (a check's
/// `id = "…"`), so problems point into the right check.
fn find_line_after(text: &str, anchor: &str, needle: &str) -> Option<usize> {
    let start = find_line(text, anchor)?;
    text.lines()
        .enumerate()
        .skip(start - 1)
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .or(Some(start))
}

fn compile_matchers(rb: &Runbook) -> Result<Vec<Matcher>, String> {
    rb.matcher
        .labels
        .iter()
        .map(|m| {
            let re = || {
                Regex::new(&format!("^(?:{})$", m.value))
                    .map_err(|e| format!("label matcher {}{}{:?}: {e}", m.name, m.op, m.value))
            };
            Ok(match m.op.as_str() {
                "=" => Matcher::Eq(m.name.clone(), m.value.clone()),
                "!=" => Matcher::Ne(m.name.clone(), m.value.clone()),
                "=~" => Matcher::Re(m.name.clone(), re()?),
                "!~" => Matcher::NotRe(m.name.clone(), re()?),
                other => return Err(format!("label matcher op {other:?} is not =, !=, =~ or !~")),
            })
        })
        .collect()
}

/// Variables a runbook's strings may use.
pub const TEMPLATE_ROOTS: [&str; 5] = ["ym", "now", "today", "labels", "incident"];

/// Every string inside a probe spec, with its field name.
fn spec_strings(spec: &ProbeSpec) -> Vec<(String, String)> {
    json_strings(spec)
}

/// Every string inside `value` once serialized, with its dotted field name.
fn json_strings(value: &impl serde::Serialize) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    walk(
                        &if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        },
                        v,
                        out,
                    );
                }
            }
            serde_json::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{prefix}.{i}"), v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::to_value(value) {
        walk("", &v, &mut out);
    }
    out
}

fn lint(
    rb: &Runbook,
    file: &str,
    text: &str,
    targets: Option<&BTreeMap<String, TargetSettings>>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    // `needle` is found after the current check's id line when there is one.
    let mut anchor = String::new();
    let locate = |anchor: &str, needle: &str| {
        if anchor.is_empty() {
            find_line(text, needle)
        } else {
            find_line_after(text, anchor, needle)
        }
    };
    let mut warnings = Vec::new();
    let mut p = |anchor: &str, needle: &str, message: String| {
        problems.push(Problem {
            file: file.to_string(),
            line: locate(anchor, needle),
            message,
            warning: false,
        });
    };
    let guaranteed = guaranteed_labels(rb);
    if rb.version != 1 {
        p(
            &anchor,
            "version",
            format!(
                "version {} is not supported; this firstline reads version 1",
                rb.version
            ),
        );
    }
    if rb.id.is_empty()
        || !rb
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        p(
            &anchor,
            "id =",
            format!(
                "id {:?} must be lower-case letters, digits and dashes",
                rb.id
            ),
        );
    }
    if rb.severity.parse::<commands::Severity>().is_err() {
        p(
            &anchor,
            "severity",
            format!("severity {:?} is not P1, P2 or P3", rb.severity),
        );
    }
    if let Err(e) = compile_matchers(rb) {
        p(&anchor, "labels", e);
    }
    if rb.checks.is_empty() {
        p(&anchor, "id =", "the runbook has no checks".into());
    }
    let env = minijinja::Environment::new();
    let sql_params = Regex::new(r"\$\d").expect("a constant regex");
    let mut check_ids = BTreeSet::new();
    for c in &rb.checks {
        let at = format!("id = \"{}\"", c.id);
        anchor = at.clone();
        if !check_ids.insert(c.id.clone()) {
            p(&anchor, &at, format!("check id {:?} appears twice", c.id));
        }
        if c.expect.is_empty() && !c.informational {
            p(
                &anchor,
                &at,
                format!(
                    "check {:?} has no expect thresholds; add expect = [...] or informational = true",
                    c.id
                ),
            );
        }
        if let Some(show) = &c.show_evidence
            && !SHOW_EVIDENCE.contains(&show.as_str())
        {
            p(
                &anchor,
                "show_evidence",
                format!(
                    "check {:?}: show_evidence {show:?} is not one of {}",
                    c.id,
                    SHOW_EVIDENCE.join(", ")
                ),
            );
        }
        for e in &c.expect {
            if let Err(m) = parse_selector(&e.path) {
                p(&anchor, &e.path, format!("check {:?}: path: {m}", c.id));
            }
            if let Some(Missing::Word(w)) = &e.missing
                && !MISSING_WORDS.contains(&w.as_str())
            {
                p(
                    &anchor,
                    "missing",
                    format!(
                        "check {:?}: missing = {w:?} is not one of {} or a number",
                        c.id,
                        MISSING_WORDS.join(", ")
                    ),
                );
            }
            if e.warn_if.is_none() && e.fail_if.is_none() {
                p(
                    &anchor,
                    &e.path,
                    format!(
                        "check {:?}: expectation on {:?} has neither warn_if nor fail_if",
                        c.id, e.path
                    ),
                );
            }
            for cond in [&e.warn_if, &e.fail_if].into_iter().flatten() {
                if let Err(m) = parse_condition(cond) {
                    p(&anchor, cond, format!("check {:?}: {m}", c.id));
                }
            }
        }
        let target = c.probe.target();
        if let Some(targets) = targets {
            match targets.get(target) {
                None => p(
                    &anchor,
                    &format!("\"{target}\""),
                    format!(
                        "check {:?}: unknown target {target:?}; configure [targets.{target}] (kind {})",
                        c.id,
                        c.probe.target_kinds().join(" or ")
                    ),
                ),
                Some(t) if !c.probe.target_kinds().contains(&t.kind()) => p(
                    &anchor,
                    &format!("\"{target}\""),
                    format!(
                        "check {:?}: a {} probe cannot use target {target:?} of kind {}",
                        c.id,
                        c.probe.kind(),
                        t.kind()
                    ),
                ),
                Some(_) => {}
            }
        }
        for (field, s) in spec_strings(&c.probe) {
            match env.template_from_str(&s) {
                Err(e) => p(
                    &anchor,
                    s.lines().next().unwrap_or(""),
                    format!("check {:?}: probe.{field}: template error: {e}", c.id),
                ),
                Ok(t) => {
                    for label in super::run::label_references(&s) {
                        if !guaranteed.contains(&label) && !defaulted(&s, &label) {
                            warnings.push(Problem {
                                file: file.to_string(),
                                line: locate(&anchor, &label),
                                message: format!(
                                    "check {:?}: probe.{field} needs alert label {label:?}, which [match] does not guarantee; an alert without it leaves the check not run (add a matcher such as {{ name = \"{label}\", op = \"=~\", value = \".+\" }}, or write labels.{label} | default(\"…\"))",
                                    c.id
                                ),
                                warning: true,
                            });
                        }
                    }
                    for var in t.undeclared_variables(false) {
                        if !TEMPLATE_ROOTS.contains(&var.as_str()) {
                            p(
                                &anchor,
                                &var,
                                format!(
                                    "check {:?}: probe.{field}: unknown placeholder {{{{ {var} }}}}; available: {}",
                                    c.id,
                                    TEMPLATE_ROOTS.join(", ")
                                ),
                            );
                        }
                    }
                }
            }
        }
        match &c.probe {
            ProbeSpec::Sql(sql) => {
                if sql.query.contains("{{") || sql.query.contains("{%") {
                    p(
                        &anchor,
                        "{{",
                        format!(
                            "check {:?}: placeholders are not allowed in SQL (alert labels would be pasted into a query)",
                            c.id
                        ),
                    );
                }
                if sql_params.is_match(&sql.query) {
                    p(
                        &anchor,
                        "$",
                        format!(
                            "check {:?}: SQL parameters ($1 …) are not supported: write the query as it runs",
                            c.id
                        ),
                    );
                }
                let q = sql.query.trim().trim_end_matches(';');
                if q.contains(';') {
                    p(
                        &anchor,
                        "query",
                        format!("check {:?}: one SQL statement per check", c.id),
                    );
                }
                if let Some(m) = crate::probe::sql::side_effects(&sql.query) {
                    p(&anchor, "query", format!("check {:?}: {m}", c.id));
                }
            }
            ProbeSpec::Prometheus(pq) => {
                if let Err(m) = balanced(&pq.query) {
                    p(
                        &anchor,
                        &pq.query.chars().take(20).collect::<String>(),
                        format!("check {:?}: PromQL: {m}", c.id),
                    );
                }
            }
            ProbeSpec::Http(h) => {
                if !matches!(h.method.as_str(), "GET" | "HEAD") {
                    p(
                        &anchor,
                        &h.method,
                        format!(
                            "check {:?}: method {} is not allowed; probes only read (GET, HEAD)",
                            c.id, h.method
                        ),
                    );
                }
                if h.attempts == 0 {
                    p(
                        &anchor,
                        "attempts",
                        format!("check {:?}: attempts must be at least 1", c.id),
                    );
                }
            }
            ProbeSpec::Metrics(m) if m.window_s.is_some_and(|w| !(1..=300).contains(&w)) => {
                p(
                    &anchor,
                    "window_s",
                    format!(
                        "check {:?}: window_s must be 1 to 300 seconds (the check waits that long)",
                        c.id
                    ),
                );
            }
            ProbeSpec::Nats(n) if n.consumer.is_some() && n.stream.is_none() => {
                p(
                    &anchor,
                    "consumer",
                    format!("check {:?}: a consumer needs its stream", c.id),
                );
            }
            _ => {}
        }
    }
    anchor.clear();
    let mut action_ids = BTreeSet::new();
    for a in &rb.actions {
        if !action_ids.insert(a.id.clone()) {
            p(
                &anchor,
                &format!("id = \"{}\"", a.id),
                format!("action id {:?} appears twice", a.id),
            );
        }
        if !ACTION_KINDS.contains(&a.kind.as_str()) {
            p(
                &anchor,
                &a.kind,
                format!(
                    "action {:?}: kind {:?} is not one of {}",
                    a.id,
                    a.kind,
                    ACTION_KINDS.join(", ")
                ),
            );
        }
    }
    lint_verdicts(rb, &check_ids, &action_ids, &mut p);
    for r in &rb.recovery {
        if !check_ids.contains(&r.check) {
            p(
                &anchor,
                &r.check,
                format!(
                    "recovery {:?}: check {:?} is not a check of this runbook",
                    r.title, r.check
                ),
            );
        }
        if !TRENDS.contains(&r.trend.as_str()) {
            p(
                &anchor,
                &r.trend,
                format!(
                    "recovery {:?}: trend {:?} is not one of {}",
                    r.title,
                    r.trend,
                    TRENDS.join(", ")
                ),
            );
        }
        if matches!(r.trend.as_str(), "below" | "above") && r.threshold.is_none() {
            p(
                &anchor,
                &r.title,
                format!(
                    "recovery {:?}: trend {} needs a threshold",
                    r.title, r.trend
                ),
            );
        }
        if r.samples < 2 {
            p(
                &anchor,
                &r.title,
                format!("recovery {:?}: samples must be at least 2", r.title),
            );
        }
        if let Err(m) = parse_selector(&r.path) {
            p(
                &anchor,
                &r.path,
                format!("recovery {:?}: path: {m}", r.title),
            );
        }
    }
    problems.extend(warnings);
    problems
}

/// Variables an action's `run` spec may use.
pub const ACTION_TEMPLATE_ROOTS: [&str; 3] = ["params", "labels", "incident"];

/// Names of the params a template refers to (`params.x`, `params["x"]`).
pub fn param_references(template: &str) -> Vec<String> {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r#"params\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*["']([^"']+)["']\s*\])"#)
            .expect("a constant regex")
    });
    let mut out: Vec<String> = re
        .captures_iter(template)
        .filter_map(|c| c.get(1).or(c.get(2)).map(|m| m.as_str().to_string()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The targets a run spec names: (field, name, the target kind it needs).
fn run_targets(run: &RunSpec) -> Vec<(&'static str, &str, &'static str)> {
    match run {
        RunSpec::Http(h) => vec![("run.target", h.target.as_str(), "http")],
        RunSpec::Command(_) => Vec::new(),
        RunSpec::NatsPublish(n) => {
            let mut out = vec![("run.target", n.target.as_str(), "nats")];
            if let NatsSource::ExecutionLogs { target, .. } = &n.from {
                out.push(("run.from.target", target.as_str(), "http"));
            }
            out
        }
        RunSpec::Sql(s) => vec![("run.target", s.target.as_str(), "postgres")],
    }
}

/// Every string of an action's `params`, with its key.
fn param_strings(a: &ActionDecl) -> Vec<(String, String)> {
    fn walk(prefix: String, v: &toml::Value, out: &mut Vec<(String, String)>) {
        match v {
            toml::Value::String(s) => out.push((prefix, s.clone())),
            toml::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(format!("{prefix}.{i}"), v, out);
                }
            }
            toml::Value::Table(t) => {
                for (k, v) in t {
                    walk(format!("{prefix}.{k}"), v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (k, v) in &a.params {
        walk(k.clone(), v, &mut out);
    }
    out
}

/// The actions' `run`, `approvers`, `quorum`, `retry` and `verify`:
/// placeholders in a run spec name only `params.*`, `labels.*` and
/// `incident` (a param the action does not declare is a warning: it must
/// be given when proposing); a param's own value may name `labels.*` and
/// `incident`; a manual action has no `run`; the targets (and, when given,
/// the commands) a run spec names exist in the configuration.
fn lint_actions(
    rb: &Runbook,
    file: &str,
    text: &str,
    targets: Option<&BTreeMap<String, TargetSettings>>,
    commands: Option<&BTreeSet<String>>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let check_ids: BTreeSet<&str> = rb.checks.iter().map(|c| c.id.as_str()).collect();
    let guaranteed = guaranteed_labels(rb);
    let env = minijinja::Environment::new();
    // Each action's lines: from its `[[actions]]` to the next one (or the
    // next top-level array of tables), so a needle is found in its action.
    let lines: Vec<&str> = text.lines().collect();
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[actions]]"))
        .map(|(i, _)| i)
        .collect();
    for (n, a) in rb.actions.iter().enumerate() {
        let start = starts.get(n).copied().unwrap_or(0);
        let end = lines
            .iter()
            .enumerate()
            .skip(start + 1)
            .find(|(_, l)| {
                let t = l.trim_start();
                t.starts_with("[[") && !t.starts_with("[[actions.")
            })
            .map(|(i, _)| i)
            .unwrap_or(lines.len());
        // A line starting with the needle (a key: `retry =`) first, then
        // any line holding it (a value), then the action's id line.
        let line_of = |needle: &str| -> Option<usize> {
            let id = format!("id = \"{}\"", a.id);
            (start..end)
                .find(|&i| lines[i].trim_start().starts_with(needle))
                .or_else(|| (start..end).find(|&i| lines[i].contains(needle)))
                .or_else(|| (start..end).find(|&i| lines[i].contains(&id)))
                .map(|i| i + 1)
        };
        let mut error = |needle: &str, message: String| {
            problems.push(Problem {
                file: file.to_string(),
                line: line_of(needle),
                message: format!("action {:?}: {message}", a.id),
                warning: false,
            })
        };
        let mut warnings = Vec::new();
        let mut warn = |needle: &str, message: String| {
            warnings.push(Problem {
                file: file.to_string(),
                line: line_of(needle),
                message: format!("action {:?}: {message}", a.id),
                warning: true,
            })
        };
        if let Some(plan) = &a.retry {
            if !RETRY_PLANS.contains(&plan.as_str()) {
                error(
                    "retry =",
                    format!("retry {plan:?} is not one of {}", RETRY_PLANS.join(", ")),
                );
            } else if plan == "restart" && a.verify.is_none() {
                error(
                    "retry =",
                    "retry = \"restart\" needs verify = \"<check id>\", the check that says whether a try worked".into(),
                );
            }
            if a.run.is_none() {
                warn(
                    "retry =",
                    "retry has no effect without run: a manual action is not retried".into(),
                );
            }
        }
        if let Some(v) = &a.verify {
            if !check_ids.contains(v.as_str()) {
                error(
                    "verify =",
                    format!("verify {v:?} is not a check of this runbook"),
                );
            } else if a.retry.as_deref() != Some("restart") {
                warn(
                    "verify =",
                    "verify is only used by retry = \"restart\"".into(),
                );
            }
        }
        for (i, r) in a.approvers.iter().enumerate() {
            if r.trim().is_empty() {
                error(
                    "approvers =",
                    format!("approvers[{i}] is empty: name a [roles.NAME]"),
                );
            }
        }
        if a.quorum == Some(0) {
            error("quorum =", "quorum must be at least 1".into());
        }
        for (key, s) in param_strings(a) {
            match env.template_from_str(&s) {
                Err(e) => error(&s, format!("params.{key}: template error: {e}")),
                Ok(t) => {
                    for var in t.undeclared_variables(false) {
                        if var != "labels" && var != "incident" {
                            error(
                                &s,
                                format!(
                                    "params.{key}: unknown placeholder {{{{ {var} }}}}; a param may use labels and incident"
                                ),
                            );
                        }
                    }
                }
            }
        }
        let Some(run) = &a.run else {
            problems.extend(warnings);
            continue;
        };
        if a.kind == "manual" {
            let table = (start..end).any(|i| lines[i].trim_start().starts_with("[actions.run]"));
            error(
                if table { "[actions.run]" } else { "run =" },
                format!(
                    "kind \"manual\" is a checklist item and cannot have run; give it its category ({})",
                    ACTION_KINDS[..ACTION_KINDS.len() - 1].join(", ")
                ),
            );
        }
        for (field, s) in json_strings(run) {
            let field = format!("run.{field}");
            match env.template_from_str(&s) {
                Err(e) => error(&s, format!("{field}: template error: {e}")),
                Ok(t) => {
                    for var in t.undeclared_variables(false) {
                        if !ACTION_TEMPLATE_ROOTS.contains(&var.as_str()) {
                            error(
                                &var,
                                format!(
                                    "{field}: unknown placeholder {{{{ {var} }}}}; available: {}",
                                    ACTION_TEMPLATE_ROOTS.join(", ")
                                ),
                            );
                        }
                    }
                    for param in param_references(&s) {
                        if !a.params.contains_key(&param) {
                            warn(
                                &param,
                                format!(
                                    "{field} uses params.{param}, which params does not declare; it must be given when proposing ({param}=…)"
                                ),
                            );
                        }
                    }
                    for label in super::run::label_references(&s) {
                        if !guaranteed.contains(&label) && !defaulted(&s, &label) {
                            warn(
                                &label,
                                format!(
                                    "{field} needs alert label {label:?}, which [match] does not guarantee; without it the action cannot be proposed"
                                ),
                            );
                        }
                    }
                }
            }
        }
        match run {
            RunSpec::Sql(sql) => {
                let first = sql
                    .statement
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                if !matches!(first.as_str(), "UPDATE" | "INSERT" | "DELETE") {
                    error(
                        "statement =",
                        format!(
                            "run.statement starts with {first:?}; a sql action runs one UPDATE, INSERT or DELETE"
                        ),
                    );
                }
                if sql.statement.trim().trim_end_matches(';').contains(';') {
                    error(
                        "statement =",
                        "run.statement: one SQL statement per action".into(),
                    );
                }
                if sql.max_rows == 0 {
                    error("max_rows =", "run.max_rows must be at least 1".into());
                }
            }
            RunSpec::NatsPublish(n) if n.max_messages == 0 => {
                error(
                    "max_messages =",
                    "run.max_messages must be at least 1".into(),
                );
            }
            RunSpec::Http(h) if h.path.is_empty() || !h.path.starts_with('/') => {
                error("path =", format!("run.path {:?} must start with /", h.path));
            }
            RunSpec::Command(c) => {
                if let Some(commands) = commands
                    && !commands.contains(&c.command)
                {
                    error(
                        &format!("\"{}\"", c.command),
                        format!(
                            "unknown command {:?}; configure [actions.commands.{}] argv = [...]",
                            c.command, c.command
                        ),
                    );
                }
            }
            _ => {}
        }
        if let Some(targets) = targets {
            for (field, name, kind) in run_targets(run) {
                match targets.get(name) {
                    None => error(
                        &format!("\"{name}\""),
                        format!(
                            "{field}: unknown target {name:?}; configure [targets.{name}] (kind {kind})"
                        ),
                    ),
                    Some(t) if t.kind() != kind => error(
                        &format!("\"{name}\""),
                        format!(
                            "{field}: a {} action needs a {kind} target, and {name:?} is of kind {}",
                            run.kind(),
                            t.kind()
                        ),
                    ),
                    Some(_) => {}
                }
            }
        }
        problems.extend(warnings);
    }
    problems
}

/// Labels every alert this runbook matches is sure to have: `alertname`
/// when names are listed, and labels whose matcher cannot hold for an
/// empty value (`=` a non-empty value, `=~` a regex that needs a
/// character).
fn guaranteed_labels(rb: &Runbook) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if !rb.matcher.alertname.is_empty() {
        out.insert("alertname".to_string());
    }
    for m in &rb.matcher.labels {
        let needs_value = match m.op.as_str() {
            "=" => !m.value.is_empty(),
            "=~" => Regex::new(&format!("^(?:{})$", m.value)).is_ok_and(|r| !r.is_match("")),
            _ => false,
        };
        if needs_value {
            out.insert(m.name.clone());
        }
    }
    out
}

/// Whether every use of `label` in `template` has a `default` filter.
fn defaulted(template: &str, label: &str) -> bool {
    template
        .split("{{")
        .skip(1)
        .filter_map(|part| part.split("}}").next())
        .filter(|expr| {
            super::run::label_references(expr)
                .iter()
                .any(|l| l == label)
        })
        .all(|expr| expr.contains("default"))
}

/// Verdicts name checks and actions of this runbook, conditions parse, and
/// one without conditions (always applies) comes last.
fn lint_verdicts(
    rb: &Runbook,
    check_ids: &BTreeSet<String>,
    action_ids: &BTreeSet<String>,
    p: &mut impl FnMut(&str, &str, String),
) {
    let mut ids = BTreeSet::new();
    for (i, v) in rb.verdicts.iter().enumerate() {
        let at = format!("id = \"{}\"", v.id);
        if !ids.insert(v.id.clone()) {
            p("", &at, format!("verdict id {:?} appears twice", v.id));
        }
        if v.when.is_empty() && i + 1 < rb.verdicts.len() {
            p(
                "",
                &at,
                format!(
                    "verdict {:?} has no conditions, so it always applies and the verdicts after it never do; move it last",
                    v.id
                ),
            );
        }
        if let Some(a) = &v.action
            && !action_ids.contains(a)
        {
            p(
                &at,
                a,
                format!(
                    "verdict {:?}: action {a:?} is not an action of this runbook",
                    v.id
                ),
            );
        }
        if let Some(sev) = &v.severity
            && sev.parse::<commands::Severity>().is_err()
        {
            p(
                &at,
                "severity",
                format!("verdict {:?}: severity {sev:?} is not P1, P2 or P3", v.id),
            );
        }
        for cond in &v.when {
            if cond.checks.is_empty() {
                p(
                    &at,
                    "checks",
                    format!("verdict {:?}: a condition names no checks", v.id),
                );
            }
            for c in &cond.checks {
                if !check_ids.contains(c) {
                    p(
                        &at,
                        c,
                        format!("verdict {:?}: {c:?} is not a check of this runbook", v.id),
                    );
                }
            }
            if let Some(st) = &cond.status
                && !VERDICT_STATUSES.contains(&st.as_str())
            {
                p(
                    &at,
                    st,
                    format!(
                        "verdict {:?}: status {st:?} is not one of {}",
                        v.id,
                        VERDICT_STATUSES.join(", ")
                    ),
                );
            }
            match (&cond.path, &cond.is) {
                (Some(path), Some(is)) => {
                    if let Err(m) = parse_selector(path) {
                        p(&at, path, format!("verdict {:?}: path: {m}", v.id));
                    }
                    if let Err(m) = parse_condition(is) {
                        p(&at, is, format!("verdict {:?}: {m}", v.id));
                    }
                }
                (None, None) if cond.status.is_none() => p(
                    &at,
                    "checks",
                    format!(
                        "verdict {:?}: a condition needs status = \"…\" or path = \"…\" with is = \"…\"",
                        v.id
                    ),
                ),
                (None, None) => {}
                _ => p(
                    &at,
                    "path",
                    format!("verdict {:?}: path and is go together", v.id),
                ),
            }
        }
    }
}

/// Parentheses, braces and brackets balance and quotes close (a cheap
/// PromQL sanity check that catches truncated queries).
fn balanced(q: &str) -> Result<(), String> {
    if q.trim().is_empty() {
        return Err("the query is empty".into());
    }
    let mut stack = Vec::new();
    let mut quote: Option<char> = None;
    for c in q.chars() {
        if let Some(qc) = quote {
            if c == qc {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '{' | '[' => stack.push(c),
            ')' | '}' | ']' => {
                let open = stack.pop();
                let want = match c {
                    ')' => '(',
                    '}' => '{',
                    _ => '[',
                };
                if open != Some(want) {
                    return Err(format!("unbalanced {c:?}"));
                }
            }
            _ => {}
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".into());
    }
    if let Some(open) = stack.pop() {
        return Err(format!("{open:?} is not closed"));
    }
    Ok(())
}
