//! What a chat command does, independent of the platform it was typed on:
//! parse with the `commands` grammar, apply through the ledger, answer in
//! one or a few lines. Every user-visible failure is an answer here, never
//! a panic or a silent drop.

use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};

use commands::{ActionCmd, Command, ExportFormat, IncidentCmd, IncidentRef, RunbookCmd, State};

use crate::approval::Identity;

use super::messages::{Messages, response_times_line, severity_icon, state_icon};
use crate::domain::incident::format_duration;
use crate::domain::time::Clock;
use crate::escalation::Escalation;
use crate::incident::{Change, Ledger, LedgerError};
use crate::intake::journal::{self, Progress};
use crate::postmortem;
use crate::runbook::load::Catalog;
use crate::runbook::run::{self, RunContext, Targets};
use crate::store::{IncidentFilter, Store};

/// What the handler needs; one per app, shared by every platform.
#[derive(Clone)]
pub struct CommandContext {
    pub ledger: Ledger,
    /// Commands wait for accepted alerts to be applied, so `/incident ack
    /// INC-1` right after an alert finds INC-1.
    pub progress: Progress,
    pub store: Store,
    pub messages: Messages,
    pub catalog: Arc<Catalog>,
    pub targets: Arc<Targets>,
    /// Checks of one runbook probed at the same time.
    pub concurrency: usize,
    /// Where the findings of a run typed outside an incident are posted.
    pub channel: String,
    /// Wakes the post dispatcher once such findings are written.
    pub posts_wake: Arc<Notify>,
    /// Contacts, rotations and policies, for `/oncall`.
    pub escalation: Arc<Escalation>,
    /// "Now", for `/oncall`.
    pub clock: Arc<dyn Clock>,
    /// Runs typed outside an incident under way at once
    /// (`runbooks.max_parallel_runs`); an incident's runs take their turn
    /// in the runbook runner instead.
    pub runs: Arc<Semaphore>,
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    /// False when the command was refused or failed, so platforms can show
    /// it as an error (and tests can tell).
    pub ok: bool,
}

impl Reply {
    fn ok(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            ok: true,
        }
    }
    fn err(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            ok: false,
        }
    }
}

/// Runs `text` typed by `user`. `thread_incident` is the incident whose
/// thread the command was typed in, which commands without an id act on.
/// Timeline events `/incident timeline` shows (the most recent): a
/// screen, not a storm.
const CHAT_TIMELINE: i64 = 30;

/// The longest command accepted: a note or a title, not a log dump (which
/// would be echoed into the incident thread and the postmortem).
pub const MAX_COMMAND_BYTES: usize = 8 * 1024;

/// The longest emoji name a reaction may carry (Slack's are at most 100
/// characters; anything longer is not an emoji).
pub const MAX_EMOJI_CHARS: usize = 64;
/// The longest user name or message reference accepted from a platform.
pub const MAX_NAME_CHARS: usize = 128;

/// Refuses a reaction whose parts are not what a platform sends, with a
/// short answer that does not echo them.
pub fn check_reaction(user: &str, emoji: &str, message_ref: &str) -> Result<(), String> {
    let odd = |s: &str| s.chars().any(|c| c.is_control() || c.is_whitespace());
    if emoji.is_empty() || emoji.chars().count() > MAX_EMOJI_CHARS || odd(emoji) {
        return Err(format!(
            "an emoji is a name of 1 to {MAX_EMOJI_CHARS} characters without spaces, like white_check_mark"
        ));
    }
    if user.trim().is_empty() || user.chars().count() > MAX_NAME_CHARS {
        return Err(format!("user must be 1 to {MAX_NAME_CHARS} characters"));
    }
    if message_ref.is_empty() || message_ref.chars().count() > MAX_NAME_CHARS || odd(message_ref) {
        return Err(format!(
            "message_ref must be 1 to {MAX_NAME_CHARS} characters without spaces, like console-3"
        ));
    }
    Ok(())
}

/// A store failure as the user sees it: what could not be done. The
/// database's own text goes to the log only: it means nothing in chat and
/// may echo the input back.
fn store_failed(what: String, e: &dyn std::fmt::Display) -> Reply {
    tracing::warn!(error = %e, what = %what, "chat command: the store failed");
    Reply::err(format!(
        "{what}: the store failed (firstline's log has the details); try again shortly"
    ))
}

pub async fn handle(
    ctx: &CommandContext,
    user: &str,
    text: &str,
    thread_incident: Option<i64>,
) -> Reply {
    handle_by(ctx, user, None, text, thread_incident).await
}

/// [`handle`], for a caller whose identity the platform vouches for (a
/// signed Slack request, the console's terminal): a proposal records who
/// proposed it, for the two-person rule.
pub async fn handle_by(
    ctx: &CommandContext,
    user: &str,
    by: Option<&Identity>,
    text: &str,
    thread_incident: Option<i64>,
) -> Reply {
    if text.len() > MAX_COMMAND_BYTES {
        return Reply::err(format!(
            "that command is {} KB; commands are at most {} KB (put long text in a file and link it)",
            text.len() / 1024,
            MAX_COMMAND_BYTES / 1024
        ));
    }
    if text.contains('\0') {
        return Reply::err(
            "that command contains a NUL character, which cannot be stored; remove it and send it again",
        );
    }
    let command = match commands::parse(text) {
        Ok(c) => c,
        Err(e) => return Reply::err(e.to_string()),
    };
    ctx.progress.caught_up(journal::READ_WAIT).await;
    match command {
        Command::Incident(cmd) => incident(ctx, user, cmd, thread_incident).await,
        Command::Help { topic } => Reply::ok(commands::help(topic.as_deref())),
        Command::Unknown { name } => {
            Reply::err(format!("unknown command /{name}; /help lists the commands"))
        }
        Command::Runbook(cmd) => runbook(ctx, user, cmd, thread_incident).await,
        Command::Oncall { schedule } => oncall(ctx, user, schedule.as_deref()),
        Command::Page { target, message } => {
            page(ctx, user, &target, message.as_deref(), thread_incident).await
        }
        Command::Action(cmd) => action(ctx, user, by, cmd, thread_incident).await,
    }
}

/// `/oncall [ROTATION]`: who is on call now and next, per rotation.
/// `/page <@who|rotation> [message]`: pages a contact (by key or chat
/// id), a rotation's on-call member, or a chat user, for the incident of
/// the thread (or the `INC-n` in the message), through the same pages,
/// pagers and timeline as the escalation.
async fn page(
    ctx: &CommandContext,
    user: &str,
    target: &str,
    message: Option<&str>,
    thread: Option<i64>,
) -> Reply {
    use crate::escalation::payload::PageTo;
    let named = message.and_then(|m| {
        m.split(|c: char| c.is_whitespace() || c == ',' || c == '.')
            .find_map(|w| {
                w.get(..4)
                    .filter(|p| p.eq_ignore_ascii_case("inc-"))
                    .and_then(|_| w.parse::<IncidentRef>().ok())
            })
    });
    let Some(id) = thread.or(named.map(|r| r.0)) else {
        return Reply::err(
            "which incident? type /page in the incident's thread, or name it in the message, e.g. /page @ann INC-7 the database is down",
        );
    };
    // `@ann`, `<@U123>`, `<@U123|ann>`, `rotation:primary`, `primary`.
    let bare = target
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim_start_matches('@');
    let bare = bare.split('|').next().unwrap_or(bare);
    let bare = bare.strip_prefix("rotation:").unwrap_or(bare);
    let esc = &ctx.escalation;
    let now = ctx.clock.now();
    let contact = esc
        .contacts
        .get(bare)
        .or_else(|| esc.contact_for_user(bare))
        .or_else(|| {
            esc.rotations
                .get(bare)
                .and_then(|r| esc.contacts.get(r.who_at(now).0))
        });
    let to = match contact {
        Some(c) => PageTo::Contact {
            id: c.id.clone(),
            via: c.page_via.clone(),
        },
        // A chat mention of someone who is not a contact: paged in the
        // thread (only a platform's own mention syntax, or `@name`).
        None if target.trim().starts_with('@') || target.trim().starts_with("<@") => {
            PageTo::ChatUser {
                user: bare.to_string(),
            }
        }
        None => {
            let mut known: Vec<String> = esc.contacts.keys().map(|k| format!("@{k}")).collect();
            known.extend(esc.rotations.keys().cloned());
            return Reply::err(if known.is_empty() {
                format!(
                    "nobody called {target:?} to page: no [contacts.*] or [rotations.*] are configured; @name mentions a chat user in the thread"
                )
            } else {
                format!(
                    "nobody called {target:?} to page; contacts and rotations: {}",
                    known.join(", ")
                )
            });
        }
    };
    change(
        ctx,
        user,
        Change::Page {
            id,
            to,
            because: target.trim().to_string(),
            note: message.map(str::to_string),
        },
    )
    .await
}

fn oncall(ctx: &CommandContext, user: &str, rotation: Option<&str>) -> Reply {
    let esc = &ctx.escalation;
    let now = ctx.clock.now();
    // Hand-off times in the caller's own zone when they are a contact.
    let zone = esc
        .contacts
        .get(user)
        .or_else(|| esc.contact_for_user(user))
        .map(|c| c.timezone);
    match rotation {
        None => Reply::ok(ctx.messages.oncall(
            esc,
            &esc.rotations.values().collect::<Vec<_>>(),
            now,
            zone,
        )),
        Some(name) => match esc.rotations.get(name.trim()) {
            Some(r) => Reply::ok(ctx.messages.oncall(esc, &[r], now, zone)),
            None if esc.rotations.is_empty() => {
                Reply::err(ctx.messages.oncall(esc, &[], now, zone))
            }
            None => Reply::err(format!(
                "no rotation {name:?}; rotations: {}",
                esc.rotations
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        },
    }
}

async fn runbook(ctx: &CommandContext, user: &str, cmd: RunbookCmd, thread: Option<i64>) -> Reply {
    match cmd {
        RunbookCmd::List => {
            if ctx.catalog.entries.is_empty() {
                return Reply::ok("no runbooks are loaded");
            }
            Reply::ok(
                ctx.catalog
                    .entries
                    .iter()
                    .map(|e| {
                        format!(
                            "{} [{}] {} — {}",
                            e.runbook.id, e.runbook.severity, e.runbook.title_en, e.runbook.title
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        }
        RunbookCmd::Show { id } => match ctx.catalog.get(&id) {
            None => Reply::err(format!("no runbook {id:?}; /runbook list shows the ids")),
            Some(e) => {
                let r = &e.runbook;
                let mut out = format!(
                    "{} [{}] {} ({})\nsource: {} §{}",
                    r.id, r.severity, r.title, r.title_en, r.source.seed, r.source.section
                );
                for (i, c) in r.checks.iter().enumerate() {
                    out.push_str(&format!(
                        "\n{}. {} [{} → {}]",
                        i + 1,
                        c.title,
                        c.probe.kind(),
                        c.probe.target()
                    ));
                }
                if !r.actions.is_empty() {
                    let actions: Vec<_> = r.actions.iter().map(|a| a.id.as_str()).collect();
                    out.push_str(&format!("\nactions: {}", actions.join(", ")));
                }
                Reply::ok(out)
            }
        },
        RunbookCmd::Run { id, incident } => {
            let Some(entry) = ctx.catalog.get(&id) else {
                return Reply::err(format!("no runbook {id:?}; /runbook list shows the ids"));
            };
            match incident.map(|r| r.0).or(thread) {
                // Through the ledger and the runbook runner: the answer
                // comes at once, the findings follow in the thread.
                Some(i) => {
                    change(
                        ctx,
                        user,
                        Change::RunRunbook {
                            id: i,
                            runbook_id: id,
                        },
                    )
                    .await
                }
                None => {
                    let checks = entry.runbook.checks.len();
                    tokio::spawn(run_and_post(ctx.clone(), id.clone()));
                    Reply::ok(format!(
                        "running {checks} check{} of {id}; the findings will be posted here when done",
                        if checks == 1 { "" } else { "s" }
                    ))
                }
            }
        }
    }
}

/// Runs a runbook typed outside an incident and posts its findings into
/// the channel, as a `chat_post` intent of no incident. Not written ahead:
/// a run cut short by a stop is not redone (typing it again is).
async fn run_and_post(ctx: CommandContext, runbook_id: String) {
    let Some(entry) = ctx.catalog.get(&runbook_id) else {
        return;
    };
    let Ok(_permit) = ctx.runs.clone().acquire_owned().await else {
        return;
    };
    let now = crate::domain::time::Millis::from_datetime(chrono::Utc::now());
    let run_ctx = RunContext {
        labels: Default::default(),
        incident: None,
        now,
    };
    let report = run::run(&entry.runbook, &ctx.targets, &run_ctx, ctx.concurrency).await;
    tracing::info!(runbook = %report.runbook_id, worst = report.worst().as_str(), "runbook checked (asked in chat)");
    let text = ctx.messages.findings(None, &report, &entry.runbook.actions);
    let payload = serde_json::json!({"channel": ctx.channel, "template": "findings", "text": text});
    let written = async {
        let mut tx = ctx.store.begin().await?;
        tx.enqueue(None, "chat_post", &payload, now).await?;
        tx.commit().await
    }
    .await;
    match written {
        Ok(()) => ctx.posts_wake.notify_one(),
        Err(e) => {
            tracing::warn!(runbook = %runbook_id, error = %e, "could not post the findings of a runbook run asked in chat")
        }
    }
}

/// `/action list` and `/action propose`.
async fn action(
    ctx: &CommandContext,
    user: &str,
    by: Option<&Identity>,
    cmd: ActionCmd,
    thread: Option<i64>,
) -> Reply {
    match cmd {
        ActionCmd::Propose { id, action, params } => {
            let id = match which(id, thread, "/action propose INC-7 restart_worker") {
                Ok(id) => id,
                Err(reply) => return reply,
            };
            let c = Change::ProposeAction {
                id,
                action,
                params,
                by: by.cloned(),
            };
            change(ctx, user, c).await
        }
        ActionCmd::List { id } => {
            let id = match which(id, thread, "/action list INC-7") {
                Ok(id) => id,
                Err(reply) => return reply,
            };
            let inc = match ctx.store.incident(id).await {
                Ok(Some(inc)) => inc,
                Ok(None) => {
                    return Reply::err(format!(
                        "{} does not exist",
                        crate::domain::incident::human_id(id)
                    ));
                }
                Err(e) => return store_failed("could not read the incident".into(), &e),
            };
            let (proposals, _, _) = match ctx.store.actions_of(id).await {
                Ok(a) => a,
                Err(e) => return store_failed("could not read the proposals".into(), &e),
            };
            let Some(entry) = inc.runbook_id.as_deref().and_then(|r| ctx.catalog.get(r)) else {
                return Reply::ok(format!(
                    "{} has no runbook, so no actions; /runbook run RUNBOOK {} attaches one",
                    inc.human_id, inc.human_id
                ));
            };
            let mut actions: Vec<_> = entry.runbook.actions.iter().collect();
            // Reversible ones first (seed 002 §3.2), in the runbook's order.
            actions.sort_by_key(|a| !a.reversible);
            let mut out = format!(
                "{} · runbook {} · actions, reversible first:",
                inc.human_id, entry.runbook.id
            );
            if actions.is_empty() {
                out.push_str(
                    "
(none)",
                );
            }
            for a in &actions {
                out.push_str(&format!(
                    "
• {} — {} · {} · {} · {}",
                    a.id,
                    a.title_en.as_deref().unwrap_or(&a.title),
                    a.kind,
                    if a.reversible {
                        "reversible"
                    } else {
                        "NOT reversible"
                    },
                    a.run
                        .as_ref()
                        .map_or("manual checklist item".to_string(), |r| format!(
                            "runs: {}",
                            r.kind()
                        ))
                ));
            }
            if !proposals.is_empty() {
                out.push_str(
                    "
proposals:",
                );
                for p in &proposals {
                    out.push_str(&format!(
                        "
#{} {} — {}{} (proposed by {})",
                        p.id,
                        p.action_id,
                        p.state,
                        p.reason
                            .as_deref()
                            .map_or(String::new(), |r| format!(": {r}")),
                        p.proposer
                    ));
                }
            }
            out.push_str(&format!(
                "
propose one: /action propose ACTION-ID {} [key=value…]",
                inc.human_id
            ));
            Reply::ok(out)
        }
    }
}

fn which(id: Option<IncidentRef>, thread: Option<i64>, usage: &str) -> Result<i64, Reply> {
    id.map(|r| r.0)
        .or(thread)
        .ok_or_else(|| Reply::err(format!("which incident? add its id, e.g. {usage}")))
}

async fn change(ctx: &CommandContext, user: &str, change: Change) -> Reply {
    match ctx.ledger.change(user, change).await {
        Ok(outcome) => Reply::ok(outcome.answer),
        Err(LedgerError::Store(e)) => {
            store_failed("could not record that, nothing changed".into(), &e)
        }
        Err(e @ (LedgerError::Overloaded | LedgerError::Stopped)) => Reply::err(format!(
            "could not record that, nothing changed: {e}; try again"
        )),
        Err(e) => Reply::err(e.to_string()),
    }
}

async fn incident(
    ctx: &CommandContext,
    user: &str,
    cmd: IncidentCmd,
    thread: Option<i64>,
) -> Reply {
    macro_rules! id {
        ($id:expr, $usage:expr) => {
            match which($id, thread, $usage) {
                Ok(id) => id,
                Err(reply) => return reply,
            }
        };
    }
    match cmd {
        IncidentCmd::Declare { title, severity } => {
            let severity = severity.unwrap_or(commands::Severity::P2);
            change(ctx, user, Change::Declare { title, severity }).await
        }
        IncidentCmd::Ack { id } => {
            let id = id!(id, "/incident ack INC-7");
            change(
                ctx,
                user,
                Change::SetState {
                    id,
                    to: State::Acknowledged,
                    note: None,
                },
            )
            .await
        }
        IncidentCmd::Resolve { id, note } => {
            let id = id!(id, "/incident resolve INC-7");
            change(
                ctx,
                user,
                Change::SetState {
                    id,
                    to: State::Resolved,
                    note,
                },
            )
            .await
        }
        IncidentCmd::Reopen { id } => {
            let id = id!(id, "/incident reopen INC-7");
            change(
                ctx,
                user,
                Change::SetState {
                    id,
                    to: State::Triggered,
                    note: None,
                },
            )
            .await
        }
        IncidentCmd::Sev { id, severity } => {
            let id = id!(id, "/incident sev INC-7 P1");
            change(ctx, user, Change::SetSeverity { id, severity }).await
        }
        IncidentCmd::Status { id, set: Some(to) } => {
            let id = id!(id, "/incident status INC-7 mitigated");
            change(ctx, user, Change::SetState { id, to, note: None }).await
        }
        IncidentCmd::Status { id, set: None } => {
            let id = id!(id, "/incident status INC-7");
            status(ctx, id).await
        }
        IncidentCmd::Note { id, text } => {
            let id = id!(id, "/incident note INC-7 restarted the worker");
            change(ctx, user, Change::Note { id, text }).await
        }
        IncidentCmd::Followup {
            id,
            text,
            owner,
            due,
        } => {
            let id = id!(
                id,
                "/incident followup INC-7 add a DLQ alert --owner @sam --due 2026-12-01"
            );
            change(
                ctx,
                user,
                Change::Followup {
                    id,
                    text,
                    owner,
                    due,
                },
            )
            .await
        }
        IncidentCmd::Timeline { id } => {
            let id = id!(id, "/incident timeline INC-7");
            timeline(ctx, id).await
        }
        IncidentCmd::Postmortem { id, format } => {
            let id = id!(id, "/incident postmortem INC-7");
            match postmortem::build(&ctx.store, id).await {
                Ok(Some(doc)) => Reply::ok(match format {
                    ExportFormat::Markdown => postmortem::markdown(&doc, &ctx.messages),
                    ExportFormat::Json => postmortem::json(&doc),
                }),
                Ok(None) => Reply::err(format!("INC-{id} does not exist")),
                Err(e) => store_failed(format!("could not read INC-{id}"), &e),
            }
        }
        IncidentCmd::List { all } => list(ctx, all).await,
    }
}

/// Where an incident's escalation stands, in one line.
fn escalation_line(ctx: &CommandContext, e: &crate::store::EscalationRow) -> String {
    let policy = e
        .severity
        .parse()
        .ok()
        .and_then(|s| ctx.escalation.policy(s));
    match (e.state.as_str(), policy, e.due_ms) {
        ("running", Some(p), Some(due)) if (e.next_k as usize) < p.len() => {
            let n = p.steps.len() as i64;
            format!(
                "escalation: step {}/{n} of {} pages at {}",
                e.next_k % n + 1,
                e.severity,
                ctx.messages.time(crate::domain::time::Millis(due))
            )
        }
        ("running", _, Some(due)) => format!(
            "escalation: runs out at {} unless acknowledged",
            ctx.messages.time(crate::domain::time::Millis(due))
        ),
        ("stopped", _, _) => format!(
            "escalation stopped: {}",
            e.reason.as_deref().unwrap_or("no reason recorded")
        ),
        ("exhausted", _, _) => {
            "escalation exhausted: everyone it names was paged and nobody acknowledged".into()
        }
        (state, _, _) => format!("escalation {state}"),
    }
}

async fn status(ctx: &CommandContext, id: i64) -> Reply {
    match ctx.store.incident(id).await {
        Ok(Some(inc)) => {
            let times = response_times_line(&inc);
            let escalation = match ctx.store.escalation(id).await {
                Ok(Some(e)) => format!("\n{}", escalation_line(ctx, &e)),
                Ok(None) => String::new(),
                Err(e) => {
                    tracing::warn!(error = %e, incident_id = id, "could not read the escalation");
                    "\nescalation: could not be read (firstline's log has the details)".into()
                }
            };
            Reply::ok(format!(
                "{} {} [{}] {}\nstate {} · detected {}{}{escalation}",
                state_icon(inc.state),
                inc.human_id,
                inc.severity,
                inc.title,
                inc.state,
                ctx.messages.time(inc.detected),
                if times.is_empty() {
                    String::new()
                } else {
                    format!(" · {times}")
                }
            ))
        }
        Ok(None) => Reply::err(format!("INC-{id} does not exist")),
        Err(e) => store_failed(format!("could not read INC-{id}"), &e),
    }
}

async fn timeline(ctx: &CommandContext, id: i64) -> Reply {
    let (inc, events, total) = match (
        ctx.store.incident(id).await,
        ctx.store.timeline_tail(id, CHAT_TIMELINE).await,
        ctx.store.timeline_count(id).await,
    ) {
        (Ok(Some(inc)), Ok(events), Ok(total)) => (inc, events, total),
        (Ok(None), _, _) => return Reply::err(format!("INC-{id} does not exist")),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return store_failed(format!("could not read INC-{id}"), &e);
        }
    };
    let mut out = format!("{} timeline ({total} events)", inc.human_id);
    if total > events.len() as i64 {
        out.push_str(&format!(
            "; the last {}, GET /api/incidents/{}/timeline has them all",
            events.len(),
            inc.human_id
        ));
    }
    for e in &events {
        let offset = format_duration(e.at.0 - inc.detected.0);
        out.push_str(&format!(
            "\n{} (+{offset}) {} — {}",
            ctx.messages.time(e.at),
            e.actor,
            e.text
        ));
    }
    Reply::ok(out)
}

async fn list(ctx: &CommandContext, all: bool) -> Reply {
    let filter = if all {
        IncidentFilter::All
    } else {
        IncidentFilter::Open
    };
    match ctx.store.incidents(filter, 50).await {
        Ok(incidents) if incidents.is_empty() => Reply::ok(if all {
            "no incidents yet"
        } else {
            "no open incidents"
        }),
        Ok(incidents) => Reply::ok(
            incidents
                .iter()
                .map(|i| {
                    // A resolved incident is done: its icon says so, not
                    // its severity, and "since" is when it got there.
                    let icon = match i.state {
                        State::Resolved => state_icon(i.state),
                        _ => severity_icon(i.severity),
                    };
                    let since = match i.state {
                        State::Triggered => Some(i.detected),
                        State::Acknowledged => i.acknowledged,
                        State::Mitigated => i.mitigated,
                        State::Resolved => i.resolved,
                    }
                    .unwrap_or(i.updated);
                    format!(
                        "{icon} {} [{}] {} — {} since {}",
                        i.human_id,
                        i.severity,
                        i.title,
                        i.state,
                        ctx.messages.time(since)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Err(e) => store_failed("could not list incidents".into(), &e),
    }
}
