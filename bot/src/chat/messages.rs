//! Message text, rendered from the templates under `templates/messages/`
//! (embedded at build time) with minijinja. Plain text with a few emoji, so
//! it reads the same in Slack, Discord and a terminal.

use std::sync::Arc;

use chrono_tz::Tz;
use minijinja::{Environment, context};

use crate::domain::alert::IncomingAlert;
use crate::domain::incident::{Incident, format_duration};
use crate::domain::time::Millis;
use crate::domain::{Severity, State};
use crate::escalation::policy::Cause;
use crate::escalation::{Escalation, Rotation};
use crate::runbook::model::ActionDecl;
use crate::runbook::run::{Breach, Finding, Report, Status};
use serde_json::Value;

const TEMPLATES: [(&str, &str); 10] = [
    ("page", include_str!("../../../templates/messages/page.txt")),
    (
        "escalation_exhausted",
        include_str!("../../../templates/messages/escalation_exhausted.txt"),
    ),
    (
        "findings",
        include_str!("../../../templates/messages/findings.txt"),
    ),
    (
        "incident_opened",
        include_str!("../../../templates/messages/incident_opened.txt"),
    ),
    (
        "state_changed",
        include_str!("../../../templates/messages/state_changed.txt"),
    ),
    (
        "severity_changed",
        include_str!("../../../templates/messages/severity_changed.txt"),
    ),
    (
        "alert_refired",
        include_str!("../../../templates/messages/alert_refired.txt"),
    ),
    (
        "storm",
        include_str!("../../../templates/messages/storm.txt"),
    ),
    (
        "oncall",
        include_str!("../../../templates/messages/oncall.txt"),
    ),
    (
        "alert_arrival",
        include_str!("../../../templates/messages/alert_arrival.txt"),
    ),
];

const POSTMORTEM: &str = include_str!("../../../templates/postmortem.md");

/// The message renderer. Cheap to clone.
#[derive(Clone)]
pub struct Messages {
    env: Arc<Environment<'static>>,
    /// The postmortem template, which wants `trim_blocks` (Markdown tables
    /// break on stray blank lines) unlike the chat messages.
    postmortem: Arc<Environment<'static>>,
    tz: Tz,
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages").field("tz", &self.tz).finish()
    }
}

/// The longest post, in characters.
pub const MAX_POST_CHARS: usize = 3000;
/// Alerts listed in an "opened" post; the rest are counted.
const POST_ALERTS: usize = 10;
/// The longest line describing one alert.
const POST_LINE_CHARS: usize = 200;

impl Messages {
    /// Builds the renderer; times are shown in `tz`.
    pub fn new(tz: Tz) -> Messages {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            // The templates are part of the binary and covered by tests; a
            // broken one is a build defect, reported by render() below.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "message template does not parse");
            }
        }
        let mut postmortem = Environment::new();
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .build()
        {
            postmortem.set_syntax(syntax);
        }
        if let Err(e) = postmortem.add_template("postmortem", POSTMORTEM) {
            tracing::error!(template = "postmortem", error = %e, "postmortem template does not parse");
        }
        Messages {
            env: Arc::new(env),
            postmortem: Arc::new(postmortem),
            tz,
        }
    }

    /// Renders the postmortem Markdown from its context.
    pub fn postmortem(&self, ctx: minijinja::Value) -> String {
        match self
            .postmortem
            .get_template("postmortem")
            .and_then(|t| t.render(ctx))
        {
            Ok(s) => s,
            Err(e) => format!("# Postmortem\n\nthe postmortem template failed: {e}\n"),
        }
    }

    /// The zone times are shown in, e.g. `Asia/Tokyo`.
    pub fn timezone(&self) -> &'static str {
        self.tz.name()
    }

    /// A time as people on call read it: local date and time with the zone.
    pub fn time(&self, m: Millis) -> String {
        time_in(m, self.tz)
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> String {
        // Whatever the values held, a post stays a post (Slack cuts text at
        // 4,000 characters; a terminal scrolls away).
        crate::text::clip(&self.render_unclipped(name, ctx), MAX_POST_CHARS).into_owned()
    }

    fn render_unclipped(&self, name: &str, ctx: minijinja::Value) -> String {
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(s) => s.trim_end().to_string(),
            Err(e) => {
                tracing::error!(template = name, error = %e, "message template failed");
                format!("(message {name} could not be rendered: {e})")
            }
        }
    }

    pub fn opened(&self, inc: &Incident, alerts: &[&IncomingAlert], truncated: u64) -> String {
        let times = inc.milestones().response_times();
        let more = alerts.len().saturating_sub(POST_ALERTS);
        let alerts: Vec<String> = alerts
            .iter()
            .take(POST_ALERTS)
            .map(|a| crate::text::clip(&a.describe(), POST_LINE_CHARS).into_owned())
            .collect();
        self.render(
            "incident_opened",
            context! {
                icon => severity_icon(inc.severity),
                id => &inc.human_id,
                severity => inc.severity.as_str(),
                title => &inc.title,
                state => inc.state.as_str(),
                detected => self.time(inc.detected),
                impact_start => inc.impact_start.filter(|s| *s != inc.detected).map(|s| self.time(s)),
                ttd => times.ttd_ms.map(format_duration),
                alerts => alerts,
                more => more,
                truncated => truncated,
            },
        )
    }

    pub fn state_changed(
        &self,
        inc: &Incident,
        from: State,
        actor: &str,
        note: Option<&str>,
    ) -> String {
        self.render(
            "state_changed",
            context! {
                icon => state_icon(inc.state),
                id => &inc.human_id,
                from => from.as_str(),
                to => inc.state.as_str(),
                actor => actor,
                note => note,
                title => &inc.title,
                severity => inc.severity.as_str(),
                times => response_times_line(inc),
            },
        )
    }

    /// The summary standing for the incidents a storm holds (see
    /// `chat::storm`).
    pub fn storm(&self, storm: &crate::chat::storm::StormView<'_>) -> String {
        self.render(
            "storm",
            context! {
                over => storm.ended.is_some(),
                started => self.time(storm.started),
                ended => storm.ended.map(|m| self.time(m)),
                held => storm.held,
                threshold => storm.threshold,
                pace => format!("{} s", crate::chat::storm::RELEASE_EVERY.as_secs()),
                window => if storm.window_ms == 60_000 { "a minute".to_string() } else { format_duration(storm.window_ms) },
                severities => storm.tally.severities_line(),
                alertnames => storm.tally.alertnames_line(),
                services => storm.tally.services_line(),
                newest => storm.tally.newest.join(" · "),
            },
        )
    }

    /// The answer to `/oncall`: per rotation, who is on call at `now` and
    /// who takes over next, when (in `zone`: the caller's when they are a
    /// contact, else the server's). With no rotations, how to configure
    /// them.
    pub fn oncall(
        &self,
        esc: &Escalation,
        rotations: &[&Rotation],
        now: Millis,
        zone: Option<Tz>,
    ) -> String {
        let tz = zone.unwrap_or(self.tz);
        let time = |m: Millis| time_in(m, tz);
        let person = |id: &str| match esc.contacts.get(id) {
            Some(c) if c.name != c.id => format!("{} ({})", c.name, c.id),
            _ => id.to_string(),
        };
        let rows: Vec<minijinja::Value> = rotations
            .iter()
            .map(|r| {
                let shift = r.shift_at(now);
                let next = shift.until.map(|u| (u, r.shift_at(u)));
                context! {
                    name => &r.name,
                    now => person(&shift.who),
                    override_until => match shift.cause {
                        Cause::Override(_) => shift.until.map(time),
                        Cause::Turn => None,
                    },
                    next => next.as_ref().map(|(_, s)| person(&s.who)),
                    next_at => next.as_ref().map(|(u, _)| time(*u)),
                    handoff => r.handoff.to_string(),
                }
            })
            .collect();
        self.render("oncall", context! { rotations => rows, zone => tz.name() })
    }

    pub fn severity_changed(&self, inc: &Incident, from: Severity, actor: &str) -> String {
        self.render(
            "severity_changed",
            context! {
                icon => severity_icon(inc.severity),
                id => &inc.human_id,
                from => from.as_str(),
                to => inc.severity.as_str(),
                actor => actor,
                title => &inc.title,
                state => inc.state.as_str(),
            },
        )
    }

    /// One alert joining (or resolving on) an open incident, in its thread.
    pub fn alert_arrival(&self, id: &str, resolved: bool, line: &str) -> String {
        self.render(
            "alert_arrival",
            context! { id => id, icon => if resolved { "✅" } else { "➕" }, line => line },
        )
    }

    /// Alerts counted rather than listed (beyond the first ones), in the
    /// incident's thread.
    pub fn alerts_counted(&self, id: &str, counted: &str) -> String {
        self.render(
            "alert_arrival",
            context! { id => id, icon => "➕", line => counted },
        )
    }

    /// What a paged person reads, on any channel (a DM, a mention in the
    /// thread, a text message, a mail, a webhook's `text`). `mention` is
    /// the platform's mention of them (or of the channel) for a post in
    /// the thread; `ack` says how to acknowledge.
    #[allow(clippy::too_many_arguments)]
    pub fn page(
        &self,
        inc: &Incident,
        origin: &str,
        ack_within: Option<&str>,
        last: bool,
        note: Option<&str>,
        mention: Option<&str>,
    ) -> String {
        self.render(
            "page",
            context! {
                icon => severity_icon(inc.severity),
                severity => inc.severity.as_str(),
                id => &inc.human_id,
                title => &inc.title,
                origin => origin,
                ack_within => ack_within,
                last => last,
                ack => format!("/incident ack {}", inc.human_id),
                note => note,
                mention => mention,
            },
        )
    }

    /// The escalation paged everyone through every round and nobody
    /// acknowledged: said in the thread, to the channel.
    pub fn escalation_exhausted(
        &self,
        inc: &Incident,
        rounds: u32,
        elapsed_ms: i64,
        here: Option<&str>,
    ) -> String {
        self.render(
            "escalation_exhausted",
            context! {
                id => &inc.human_id,
                title => &inc.title,
                severity => inc.severity.as_str(),
                rounds => rounds,
                elapsed => crate::domain::incident::format_duration(elapsed_ms),
                here => here,
            },
        )
    }

    pub fn refired(&self, inc: &Incident, alert: &IncomingAlert) -> String {
        self.render(
            "alert_refired",
            context! {
                id => &inc.human_id,
                state => inc.state.as_str(),
                alert => alert.describe(),
                title => &inc.title,
                severity => inc.severity.as_str(),
            },
        )
    }
}

impl Messages {
    /// The findings of a runbook run, in the runbook's order, naming the
    /// likely bottleneck.
    /// `incident` is `None` for a run of no incident (`runbook run` on the
    /// command line, `/runbook run ID` outside an incident).
    pub fn findings(
        &self,
        incident: Option<&str>,
        report: &Report,
        actions: &[ActionDecl],
    ) -> String {
        // Evidence gives way first: the post must keep every check's line,
        // the bottleneck and the verdict within the platform's size.
        let mut text = String::new();
        for lines in [8, 4, 2, 1, 0] {
            text = self.findings_with(incident, report, actions, lines);
            if text.chars().count() <= MAX_POST_CHARS {
                break;
            }
        }
        crate::text::clip(&text, MAX_POST_CHARS).into_owned()
    }

    /// The findings post with at most `evidence` lines of evidence a check.
    fn findings_with(
        &self,
        incident: Option<&str>,
        report: &Report,
        actions: &[ActionDecl],
        evidence: usize,
    ) -> String {
        // Several checks often read one answer (seed 000's summary): its
        // evidence is shown once and referred to after that.
        let mut shown: Vec<(&str, usize)> = Vec::new();
        let findings: Vec<_> = report
            .findings
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let detail = finding_detail(f);
                let evidence_lines = if !f.show_evidence || f.evidence.is_empty() {
                    Vec::new()
                } else if let Some((_, first)) = shown.iter().find(|(e, _)| *e == f.evidence) {
                    if evidence > 0 {
                        vec![format!("(the same answer as #{first})")]
                    } else {
                        Vec::new()
                    }
                } else {
                    shown.push((&f.evidence, i + 1));
                    evidence_excerpt(&f.evidence, evidence)
                };
                context! {
                    icon => f.status.icon(), title => &f.title, probe => f.probe, target => &f.target,
                    status => f.status.as_str(), detail => detail, duration => format_duration(f.duration_ms as i64),
                    evidence_lines => evidence_lines,
                }
            })
            .collect();
        let mut unconfigured: Vec<String> = report
            .findings
            .iter()
            .filter(|f| f.unconfigured)
            .map(|f| f.target.clone())
            .collect();
        unconfigured.sort_unstable();
        unconfigured.dedup();
        let bottleneck = report.bottleneck.and_then(|i| {
            let f = report.findings.get(i)?;
            Some(context! { index => i + 1, title => &f.title, verb => if f.status == Status::Error { "could not be checked" } else { "failed" } })
        });
        let not_run_labels: Vec<String> = {
            let mut l: Vec<String> = report
                .findings
                .iter()
                .flat_map(|f| f.missing_labels.iter().cloned())
                .collect();
            l.sort();
            l.dedup();
            l
        };
        let verdict = report.verdict.as_ref().map(|v| {
            let action = v.action.as_ref().map(|id| {
                let decl = actions.iter().find(|a| &a.id == id);
                context! {
                    id => id,
                    title => decl.map(|a| a.title_en.clone().unwrap_or_else(|| a.title.clone())),
                    reversible => decl.map(|a| if a.reversible { "reversible" } else { "not reversible" }),
                }
            });
            context! {
                title => &v.title, title_en => &v.title_en, severity => &v.severity,
                because => v.because.join("; "), action => action,
            }
        });
        let counts = [Status::Fail, Status::Error, Status::Warn, Status::Ok]
            .iter()
            .filter_map(|s| {
                let n = report.findings.iter().filter(|f| f.status == *s).count();
                (n > 0).then(|| format!("{n} {}", s.as_str()))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut ordered: Vec<&ActionDecl> = actions.iter().collect();
        ordered.sort_by_key(|a| !a.reversible);
        let actions = ordered
            .iter()
            .map(|a| {
                format!(
                    "{}{}",
                    a.id,
                    if a.reversible { " (reversible)" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        self.render_unclipped(
            "findings",
            context! {
                id => incident.unwrap_or("(no incident)"), incident => incident, runbook_id => &report.runbook_id, title => &report.title, title_en => &report.title_en,
                summary => counts, findings => findings, bottleneck => bottleneck, actions => actions,
                unconfigured => unconfigured, missing_labels => not_run_labels, verdict => verdict,
            },
        )
    }
}

/// What one finding says after its title: why it could not run, every
/// threshold crossed, or what was observed.
fn finding_detail(f: &Finding) -> Option<String> {
    if f.unconfigured {
        return Some("not run: target not configured".to_string());
    }
    if let Some(e) = &f.error {
        let mut text = e.clone();
        // Thresholds crossed before a value went missing still count.
        for b in f.breaches.iter().filter(|b| b.status >= Status::Fail) {
            text.push_str(&format!("; {}", breach_text(b)));
        }
        return Some(text);
    }
    if !f.breaches.is_empty() {
        let all: Vec<String> = f.breaches.iter().map(breach_text).collect();
        return Some(all.join("; "));
    }
    match (&f.observed, &f.threshold) {
        (Some(v), Some(t)) => Some(format!("observed {} ({t})", short_value(v))),
        (Some(v), None) => Some(format!("observed {}", short_value(v))),
        (None, Some(t)) => Some(t.clone()),
        (None, None) => None,
    }
}

/// `failed = 12, breached > 5 — meaning`.
fn breach_text(b: &Breach) -> String {
    let meaning = b
        .meaning
        .as_deref()
        .map(|m| format!(" — {m}"))
        .unwrap_or_default();
    match &b.observed {
        Some(v) => format!(
            "{} = {}, breached {}{meaning}",
            b.path,
            short_value(v),
            b.condition
        ),
        None => format!(
            "{}: no data, which counts as {}{meaning}",
            b.path,
            b.status.as_str()
        ),
    }
}

/// A value in a line: strings bare, anything long cut.
fn short_value(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    crate::text::clip(&text, 120).into_owned()
}

/// The evidence as post lines: at most `lines`, each at most 160
/// characters.
fn evidence_excerpt(evidence: &str, lines: usize) -> Vec<String> {
    if lines == 0 {
        return Vec::new();
    }
    let all: Vec<&str> = evidence.lines().collect();
    let mut out: Vec<String> = all
        .iter()
        .take(lines)
        .map(|l| crate::text::clip(l, 160).into_owned())
        .collect();
    if all.len() > lines {
        out.push(format!("… {} more line(s)", all.len() - lines));
    }
    out
}

/// `TTA 3m10s · TTR 1h02m`: the response times reached so far.
/// A time as people on call read it in `tz`.
fn time_in(m: Millis, tz: Tz) -> String {
    m.to_datetime()
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

pub fn response_times_line(inc: &Incident) -> String {
    let t = inc.milestones().response_times();
    [
        ("TTD", t.ttd_ms),
        ("TTA", t.tta_ms),
        ("TTM", t.ttm_ms),
        ("TTR", t.ttr_ms),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.map(|ms| format!("{name} {}", format_duration(ms))))
    .collect::<Vec<_>>()
    .join(" · ")
}

pub fn severity_icon(s: Severity) -> &'static str {
    match s {
        Severity::P1 => "🔴",
        Severity::P2 => "🟠",
        Severity::P3 => "🟡",
    }
}

pub fn state_icon(s: State) -> &'static str {
    match s {
        State::Triggered => "🚨",
        State::Acknowledged => "👀",
        State::Mitigated => "🩹",
        State::Resolved => "✅",
    }
}
