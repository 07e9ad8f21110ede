//! The ledger's side of remediation: proposals, votes, expiry and each
//! try's result, all in the ledger's transaction, so a vote and an expiry
//! (or two deliveries of one reaction) are decided one after the other.
//!
//! Invariant: an `action` intent (a try) is written only here, when a
//! proposal reaches its quorum of counted approvals for the hash of what
//! will run, or as the next try of a retry plan that approval covered.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::LedgerError;
use super::apply::{ChangeOutcome, Effects, Rules, event, load, post};
use crate::action::{Outcome, Vars};
use crate::approval::{Identity, Vote, plan_hash, refusal};
use crate::domain::incident::{EventKind, Incident};
use crate::domain::time::Millis;
use crate::domain::{Severity, State};
use crate::runbook::model::ActionDecl;
use crate::store::{Batch, ProposalRow, RunRow, VoteRow, proposal_state as st};

/// The outbox kind of a try.
pub const KIND: &str = "action";

/// What an `action` intent carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TryPayload {
    pub proposal_id: i64,
    pub attempt: i64,
}

/// Categories refused until the incident's first recovery is recorded
/// (seed 002 §3.2: schema and bulk-data changes come after it).
pub const AFTER_FIRST_RECOVERY: [&str; 2] = ["data_fix", "schema_change"];

/// Tries a retry plan allows in all, and the waits between them.
pub fn plan_of(retry: Option<&str>) -> (i64, &'static [i64]) {
    match retry {
        // Seed 000 §4.2: again after 30 s, 60 s and 120 s.
        Some("backoff") => (4, &[30_000, 60_000, 120_000]),
        // Seed 003: restart up to 3 times, the health check in between
        // (`actions.verify_after_s` after each try): the next try follows
        // the failed check at once.
        Some("restart") => (3, &[0, 0]),
        _ => (1, &[]),
    }
}

/// How a try ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TryResult {
    /// It ran; `verify` is the health check's line after a restart plan's
    /// try (`None` when there is none), which must pass for the try to
    /// count as working.
    Ran {
        outcome: Outcome,
        duration_ms: i64,
        verify: Option<(bool, String)>,
    },
    /// A process died between sending it and recording its result.
    Unknown { started_ms: i64 },
    /// What would run now differs from what was approved.
    Changed { now: String },
}

/// The parameters an action is proposed with: its `params`, then the
/// `key=value` words given.
fn params_of(
    decl: &ActionDecl,
    given: &[(String, String)],
) -> Result<BTreeMap<String, String>, String> {
    let mut out: BTreeMap<String, String> = decl
        .params
        .iter()
        .map(|(k, v)| {
            let v = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    let referenced = decl
        .run
        .as_ref()
        .and_then(|r| serde_json::to_string(r).ok())
        .unwrap_or_default();
    for (k, v) in given {
        let known = decl.params.contains_key(k)
            || referenced.contains(&format!("params.{k}"))
            || referenced.contains(&format!("params[\"{k}\"]"));
        if !known {
            let mut names: Vec<&str> = decl.params.keys().map(String::as_str).collect();
            names.sort();
            return Err(format!(
                "{} takes no parameter {k:?}{}",
                decl.id,
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" (it takes {})", names.join(", "))
                }
            ));
        }
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// The values an action's placeholders see. A parameter's value may itself
/// name the alert's labels or the incident (`component = "{{ labels.service }}"`):
/// it is rendered first.
pub fn vars_for(params: &BTreeMap<String, String>, inc: &Incident) -> Result<Vars, String> {
    let mut vars = Vars {
        params: BTreeMap::new(),
        labels: inc.labels.clone(),
        incident: inc.human_id.clone(),
    };
    let mut rendered = BTreeMap::new();
    for (k, v) in params {
        rendered.insert(
            k.clone(),
            crate::action::render(v, &vars).map_err(|e| format!("parameter {k}: {e}"))?,
        );
    }
    vars.params = rendered;
    Ok(vars)
}

/// What will run, described, and its hash.
fn describe(
    rules: &Rules,
    decl: &ActionDecl,
    inc: &Incident,
    params: &BTreeMap<String, String>,
) -> Result<(String, String), String> {
    let described = match &decl.run {
        Some(spec) => {
            let vars = vars_for(params, inc)?;
            crate::action::prepare(spec, &vars, &rules.actions)?.describe()
        }
        None => {
            let mut d = format!(
                "manual step: {}",
                decl.title_en.as_deref().unwrap_or(&decl.title)
            );
            for (k, v) in params {
                d.push_str(&format!("\n  {k} = {v}"));
            }
            d
        }
    };
    let hash = plan_hash(&decl.id, &described);
    Ok((described, hash))
}

fn action_of<'a>(
    rules: &'a Rules,
    inc: &Incident,
) -> Result<(&'a str, Vec<&'a ActionDecl>), String> {
    let Some(rb) = inc.runbook_id.as_deref() else {
        return Err(format!(
            "{} has no runbook, so no actions; /runbook run RUNBOOK {} attaches one",
            inc.human_id, inc.human_id
        ));
    };
    let Some(entry) = rules.catalog.get(rb) else {
        return Err(format!("{}'s runbook {rb} is not loaded", inc.human_id));
    };
    Ok((
        entry.runbook.id.as_str(),
        entry.runbook.actions.iter().collect(),
    ))
}

/// `/action propose`: records and posts a proposal.
#[allow(clippy::too_many_arguments)]
pub(super) async fn propose(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    actor: &str,
    by: Option<&Identity>,
    id: i64,
    action: &str,
    given: &[(String, String)],
    effects: &mut Effects,
) -> Result<ChangeOutcome, LedgerError> {
    let inc = load(tx, id).await?;
    let refuse = |m: String| Err(LedgerError::Refused(m));
    if inc.state == State::Resolved {
        return refuse(format!(
            "{} is resolved; reopen it before changing anything",
            inc.human_id
        ));
    }
    let (runbook_id, actions) = match action_of(rules, &inc) {
        Ok(a) => a,
        Err(m) => return refuse(m),
    };
    let Some(decl) = actions.iter().find(|a| a.id == action) else {
        let ids: Vec<&str> = actions.iter().map(|a| a.id.as_str()).collect();
        return refuse(format!(
            "runbook {runbook_id} has no action {action:?}; its actions: {}",
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        ));
    };
    let proposals = tx.tx().proposals_of(inc.id).await?;
    if let Some(p) = proposals.iter().find(|p| p.in_flight()) {
        return refuse(format!(
            "{} has a change under way: #{} {} ({}); one change at a time: wait until it has run and its recovery re-check is in, or reject it with :{}:",
            inc.human_id, p.id, p.action_id, p.state, rules.approval.reject_emoji
        ));
    }
    if AFTER_FIRST_RECOVERY.contains(&decl.kind.as_str()) && inc.mitigated.is_none() {
        return refuse(format!(
            "{} is a {} change: refused until the first recovery of {} is recorded (schema and bulk-data changes come after it); try the reversible actions first",
            decl.id, decl.kind, inc.human_id
        ));
    }
    let params = params_of(decl, given).map_err(LedgerError::Refused)?;
    let (described, hash) = describe(rules, decl, &inc, &params)
        .map_err(|e| LedgerError::Refused(format!("cannot propose {}: {e}", decl.id)))?;
    let manual = decl.run.is_none();
    let roles = rules.approval.approver_roles(&decl.approvers);
    if !manual && !roles.iter().any(|r| rules.approval.roles.contains_key(r)) {
        return refuse(format!(
            "cannot propose {}: no configured role may approve it; name one in approvers = [...] on the action or in [approvals] default_approvers, with its [roles.NAME] members",
            decl.id
        ));
    }
    let quorum = i64::from(decl.quorum.unwrap_or(rules.approval.quorum).max(1));
    let two_person = rules.approval.two_person_p1 && inc.severity == Severity::P1 && !manual;
    let expires = Millis(now.0.saturating_add(rules.approval.expire_ms));
    let mut row = ProposalRow {
        id: 0,
        incident_id: inc.id,
        action_id: decl.id.clone(),
        runbook_id: runbook_id.to_string(),
        title: decl.title_en.clone().unwrap_or_else(|| decl.title.clone()),
        category: decl.kind.clone(),
        run_kind: decl.run.as_ref().map_or("manual", |r| r.kind()).to_string(),
        reversible: decl.reversible,
        params: serde_json::to_string(&params).unwrap_or_else(|_| "{}".into()),
        described: described.clone(),
        hash: hash.clone(),
        approvers: serde_json::to_string(&roles).unwrap_or_else(|_| "[]".into()),
        quorum,
        two_person,
        retry: decl.retry.clone(),
        proposer: actor.to_string(),
        proposer_identity: by.map(Identity::to_string),
        post_outbox_id: None,
        state: st::PROPOSED.into(),
        reason: None,
        attempts: 0,
        created_ms: now.0,
        expires_ms: expires.0,
        updated_ms: now.0,
    };
    row.id = tx.tx().insert_proposal(&row).await?;
    let why = why(rules, decl, runbook_id);
    let a = &rules.approval;
    let text = if manual {
        format!(
            "Checklist item #{n} for {inc_id}: {title} ({action})\n{described}\nWhy: {why}\nTick it: react :{ok}: here once it is done (anyone may). Drop it: :{no}:\nProposed by {actor}; open until {until}",
            n = row.id,
            inc_id = inc.human_id,
            title = row.title,
            action = decl.id,
            ok = a.approve_emoji,
            no = a.reject_emoji,
            until = rules.messages.time(expires),
        )
    } else {
        let plan = decl.retry.as_deref().map_or(String::new(), |r| {
            let (tries, _) = plan_of(Some(r));
            format!(
                "\nRetry plan ({r}): up to {tries} tries{}, covered by this one approval; then the incident escalates",
                if r == "restart" {
                    decl.verify
                        .as_deref()
                        .map_or(String::new(), |v| format!(", check {v} after each"))
                } else {
                    ", 30 s, 60 s and 120 s apart, same idempotency key".into()
                }
            )
        });
        format!(
            "Proposal #{n} for {inc_id}: {title} ({action}, {kind})\nWill run:\n{described}\nWhy: {why}\nReversible: {rev}{plan}\nApprove: react :{ok}: here; needs {quorum} approval{s} from {who}{two}. Reject: :{no}:\nExpires {until} (approval {hash})\nProposed by {actor}",
            n = row.id,
            inc_id = inc.human_id,
            title = row.title,
            action = decl.id,
            kind = row.run_kind,
            rev = if decl.reversible {
                "yes"
            } else {
                "NO, it cannot be undone"
            },
            ok = a.approve_emoji,
            no = a.reject_emoji,
            s = if quorum == 1 { "" } else { "s" },
            who = a.describe_roles(&roles),
            two = if two_person {
                "; P1: the proposer's own approval does not count"
            } else {
                ""
            },
            until = rules.messages.time(expires),
        )
    };
    let post_id = tx
        .enqueue(
            Some(inc.id),
            "chat_post",
            &json!({"channel": rules.channel, "template": PROPOSAL_TEMPLATE, "text": text}),
            now,
        )
        .await?;
    effects.enqueued += 1;
    row.post_outbox_id = Some(post_id);
    tx.tx().update_proposal(&row).await?;
    record(
        tx,
        &inc,
        now,
        actor,
        &format!(
            "{actor} proposed #{} {} ({}): {}",
            row.id,
            decl.id,
            row.run_kind,
            first_line(&described)
        ),
        json!({"op": "proposed", "proposal": row.id, "action": decl.id, "hash": hash, "described": described, "approvers": roles, "quorum": quorum, "two_person": two_person, "expires_ms": expires.0, "proposer_identity": row.proposer_identity}),
    )
    .await?;
    Ok(ChangeOutcome {
        answer: format!(
            "proposed #{} {} for {}: react :{}: on the proposal in its thread to {}",
            row.id,
            decl.id,
            inc.human_id,
            a.approve_emoji,
            if manual { "tick it" } else { "approve it" }
        ),
        incident: inc,
    })
}

/// The chat template of a proposal post: never merged with other posts,
/// since people react to it.
pub const PROPOSAL_TEMPLATE: &str = "action_proposal";

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Why the runbook offers the action: the verdicts pointing to it.
fn why(rules: &Rules, decl: &ActionDecl, runbook_id: &str) -> String {
    let verdicts: Vec<String> = rules
        .catalog
        .get(runbook_id)
        .map(|e| {
            e.runbook
                .verdicts
                .iter()
                .filter(|v| v.action.as_deref() == Some(decl.id.as_str()))
                .map(|v| format!("\"{}\"", v.title_en.as_deref().unwrap_or(&v.title)))
                .collect()
        })
        .unwrap_or_default();
    if verdicts.is_empty() {
        format!("a first-response action of runbook {runbook_id}")
    } else {
        format!(
            "runbook {runbook_id} points to it when {} (see the findings above)",
            verdicts.join(" or ")
        )
    }
}

async fn record(
    tx: &mut Batch<'_>,
    inc: &Incident,
    now: Millis,
    actor: &str,
    text: &str,
    data: serde_json::Value,
) -> Result<(), LedgerError> {
    event(tx, inc, now, actor, EventKind::Action, text, data).await
}

/// Records a vote's outcome on the timeline and says it in the thread;
/// the text is the person's answer too.
#[allow(clippy::too_many_arguments)]
async fn announce(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    inc: &Incident,
    actor: &str,
    text: String,
    data: serde_json::Value,
    effects: &mut Effects,
) -> Result<Option<String>, LedgerError> {
    record(tx, inc, now, actor, &text, data).await?;
    say(tx, rules, now, inc, text.clone(), effects).await?;
    Ok(Some(text))
}

async fn say(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    inc: &Incident,
    text: String,
    effects: &mut Effects,
) -> Result<(), LedgerError> {
    post(tx, rules, now, inc, "action", text, effects).await
}

/// A reaction on one of the incident's messages: a vote if the message is
/// a proposal and the emoji votes. Returns the answer for the person, or
/// `None` when the reaction is nothing to the approval flow.
#[allow(clippy::too_many_arguments)]
pub(super) async fn on_reaction(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    actor: &str,
    by: Option<&Identity>,
    inc: &Incident,
    emoji: &str,
    message_ref: &str,
    removed: bool,
    effects: &mut Effects,
) -> Result<Option<String>, LedgerError> {
    let Some(vote) = rules.approval.vote_of(emoji) else {
        return Ok(None);
    };
    let Some(found) = tx.tx().proposal_by_message(message_ref).await? else {
        // A vote on another message: said once, while a proposal waits.
        if removed {
            return Ok(None);
        }
        let waiting = tx
            .tx()
            .proposals_of(inc.id)
            .await?
            .into_iter()
            .find(|p| p.state == st::PROPOSED);
        if let Some(p) = waiting {
            let text = format!(
                "{actor}'s :{emoji}: counts for nothing there: approvals count only on the proposal message of #{} {}",
                p.id, p.action_id
            );
            let data = json!({"op": "elsewhere", "proposal": p.id, "message_ref": message_ref});
            return announce(tx, rules, now, inc, actor, text, data, effects).await;
        }
        return Ok(None);
    };
    let mut p = tx.tx().proposal(found.id).await?.unwrap_or(found);
    let label = format!("#{} {}", p.id, p.action_id);
    // Too late: the answer is the same whoever reacts.
    if p.state == st::PROPOSED && now.0 >= p.expires_ms {
        expire_row(tx, rules, now, inc, &mut p, effects).await?;
    }
    // Approved but not yet running: taking a ✅ off still withdraws it (the
    // try, when its turn comes, finds the proposal no longer approved).
    let withdrawing_in_time = removed && vote == Vote::Approve && p.state == st::APPROVED;
    if p.state != st::PROPOSED && !withdrawing_in_time {
        let text = match p.state.as_str() {
            st::EXPIRED => format!(
                "{actor}'s :{emoji}: on {label} changes nothing: it expired at {}; propose it again",
                rules.messages.time(Millis(p.expires_ms))
            ),
            _ if removed => format!(
                "{actor} took back :{emoji}: on {label}, which is already {}: that changes nothing",
                p.state
            ),
            _ => format!(
                "{actor}'s :{emoji}: on {label} changes nothing: it is already {}",
                p.state
            ),
        };
        return announce(tx, rules, now, inc, actor, text, json!({"op": "ignored", "proposal": p.id, "emoji": emoji, "removed": removed, "state": p.state}), effects).await;
    }
    let manual = p.run_kind == "manual";
    let roles = p.approver_roles();
    let proposer = p
        .proposer_identity
        .as_deref()
        .and_then(|s| Identity::parse(s).ok());
    let why_not = if manual && vote == Vote::Approve {
        by.is_none()
            .then(|| "it came through a route that does not vouch for who sent it".to_string())
    } else {
        refusal(
            &rules.approval,
            &roles,
            vote,
            by,
            proposer.as_ref(),
            p.two_person,
        )
        .or_else(|| {
            // A proposer nobody vouched for is known by name only: under the
            // two-person rule the same name cannot approve it either.
            (p.two_person && proposer.is_none() && vote == Vote::Approve && actor == p.proposer)
                .then(|| "on a P1 the proposer's own approval does not count (two-person rule); another approver is needed".to_string())
        })
    };
    if let Some(why_not) = why_not {
        let text = format!("{actor}'s :{emoji}: on {label} does not count: {why_not}");
        return announce(tx, rules, now, inc, actor, text, json!({"op": "refused", "proposal": p.id, "vote": vote.as_str(), "identity": by.map(Identity::to_string), "removed": removed, "why": why_not}), effects).await;
    }
    let Some(who) = by else {
        return Ok(None);
    };
    let identity = who.to_string();
    if removed {
        if !tx.tx().delete_vote(p.id, &identity, vote.as_str()).await? {
            return Ok(None);
        }
        let (n, _) = tally(tx, &p).await?;
        if p.state == st::APPROVED && n < p.quorum {
            settle(tx, &mut p, st::PROPOSED, None, now).await?;
        }
        let text = format!(
            "{} withdrew their {} of {label} ({n} of {} approvals)",
            named(actor, &identity),
            if vote == Vote::Approve {
                "approval"
            } else {
                "rejection"
            },
            p.quorum
        );
        return announce(tx, rules, now, inc, actor, text, json!({"op": "withdrawn", "proposal": p.id, "vote": vote.as_str(), "identity": identity}), effects).await;
    }
    // What would run now must still be what was proposed.
    if let Err(changed) = still_same(rules, inc, &p) {
        settle(tx, &mut p, st::CANCELLED, Some(changed.clone()), now).await?;
        let text = format!(
            "{actor}'s :{emoji}: on {label} does not count: {changed}; earlier approvals no longer count and nothing will run; propose it again"
        );
        return announce(
            tx,
            rules,
            now,
            inc,
            actor,
            text,
            json!({"op": "cancelled", "proposal": p.id, "why": changed}),
            effects,
        )
        .await;
    }
    let fresh = tx
        .tx()
        .put_vote(&VoteRow {
            proposal_id: p.id,
            identity: identity.clone(),
            actor: actor.to_string(),
            vote: vote.as_str().into(),
            hash: p.hash.clone(),
            at_ms: now.0,
        })
        .await?;
    if !fresh {
        // The same reaction delivered again: already counted.
        return Ok(Some(format!(
            "{actor}'s :{emoji}: on {label} was already counted"
        )));
    }
    if vote == Vote::Reject {
        settle(
            tx,
            &mut p,
            st::REJECTED,
            Some(format!("rejected by {actor}")),
            now,
        )
        .await?;
        let text = format!(
            "{label} rejected by {}: nothing will run",
            named(actor, &identity)
        );
        return announce(
            tx,
            rules,
            now,
            inc,
            actor,
            text,
            json!({"op": "rejected", "proposal": p.id, "identity": identity}),
            effects,
        )
        .await;
    }
    if manual {
        settle(
            tx,
            &mut p,
            st::DONE,
            Some(format!("ticked by {actor}")),
            now,
        )
        .await?;
        let text = format!(
            "checklist item {label} done: ticked by {}",
            named(actor, &identity)
        );
        return announce(
            tx,
            rules,
            now,
            inc,
            actor,
            text,
            json!({"op": "done", "proposal": p.id, "identity": identity}),
            effects,
        )
        .await;
    }
    let (n, names) = tally(tx, &p).await?;
    record(tx, inc, now, actor, &format!("{} approved {label} ({n} of {})", named(actor, &identity), p.quorum), json!({"op": "approved_by", "proposal": p.id, "identity": identity, "hash": p.hash, "count": n})).await?;
    if n < p.quorum {
        let text = format!(
            "{actor} approved {label}: {n} of {} approvals; waiting for {} more",
            p.quorum,
            p.quorum - n
        );
        say(tx, rules, now, inc, text.clone(), effects).await?;
        return Ok(Some(text));
    }
    settle(
        tx,
        &mut p,
        st::APPROVED,
        Some(format!("approved by {}", names.join(", "))),
        now,
    )
    .await?;
    tx.enqueue(
        Some(inc.id),
        KIND,
        &serde_json::to_value(TryPayload {
            proposal_id: p.id,
            attempt: 1,
        })
        .unwrap_or_default(),
        now,
    )
    .await?;
    effects.enqueued += 1;
    let text = format!(
        "{label} approved by {} (proposed by {}): running it now",
        names.join(", "),
        p.proposer
    );
    let data = json!({"op": "approved", "proposal": p.id, "approvers": names, "hash": p.hash});
    announce(tx, rules, now, inc, actor, text, data, effects).await
}

/// Moves a proposal to `state`, for `reason`, and writes it.
async fn settle(
    tx: &mut Batch<'_>,
    p: &mut ProposalRow,
    state: &str,
    reason: Option<String>,
    now: Millis,
) -> Result<(), LedgerError> {
    p.state = state.into();
    p.reason = reason;
    p.updated_ms = now.0;
    tx.tx().update_proposal(p).await?;
    Ok(())
}

/// Approvals counted for the proposal's hash, and their names.
async fn tally(tx: &mut Batch<'_>, p: &ProposalRow) -> Result<(i64, Vec<String>), LedgerError> {
    let votes = tx.tx().votes(p.id).await?;
    let names: Vec<String> = votes
        .iter()
        .filter(|v| v.vote == Vote::Approve.as_str() && v.hash == p.hash)
        .map(|v| named(&v.actor, &v.identity))
        .collect();
    Ok((names.len() as i64, names))
}

/// Who voted, as the thread names them: `actor (identity)`, unless the
/// actor already says it (Slack's actor is `name (slack:U…)`, or just
/// `slack:U…` when no name is known).
fn named(actor: &str, identity: &str) -> String {
    if actor == identity || actor.ends_with(&format!("({identity})")) {
        actor.to_string()
    } else {
        format!("{actor} ({identity})")
    }
}

/// `Ok` when what the proposal would run now is what was proposed;
/// otherwise what changed.
pub fn still_same(rules: &Rules, inc: &Incident, p: &ProposalRow) -> Result<(), String> {
    let (_, actions) = action_of(rules, inc)?;
    let Some(decl) = actions.iter().find(|a| a.id == p.action_id) else {
        return Err(format!("the runbook no longer has action {}", p.action_id));
    };
    let (described, hash) = describe(rules, decl, inc, &p.param_map())
        .map_err(|e| format!("{} can no longer be prepared: {e}", p.action_id))?;
    if hash != p.hash {
        return Err(format!(
            "{} changed since it was proposed (now: {})",
            p.action_id,
            first_line(&described)
        ));
    }
    Ok(())
}

async fn expire_row(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    inc: &Incident,
    p: &mut ProposalRow,
    effects: &mut Effects,
) -> Result<(), LedgerError> {
    settle(tx, p, st::EXPIRED, Some("not approved in time".into()), now).await?;
    let (n, _) = tally(tx, p).await?;
    let text = format!(
        "#{} {} expired at {} with {n} of {} approvals: nothing ran; propose it again if it is still wanted",
        p.id,
        p.action_id,
        rules.messages.time(Millis(p.expires_ms)),
        p.quorum
    );
    record(
        tx,
        inc,
        now,
        "firstline",
        &text,
        json!({"op": "expired", "proposal": p.id}),
    )
    .await?;
    say(tx, rules, now, inc, text, effects).await
}

/// The expiry sweep found proposal `proposal` past its time.
pub(super) async fn expire(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    id: i64,
    proposal: i64,
    effects: &mut Effects,
) -> Result<ChangeOutcome, LedgerError> {
    let inc = load(tx, id).await?;
    let Some(mut p) = tx.tx().proposal(proposal).await? else {
        return Err(LedgerError::NotFound(format!("proposal #{proposal}")));
    };
    if p.state == st::PROPOSED && now.0 >= p.expires_ms {
        expire_row(tx, rules, now, &inc, &mut p, effects).await?;
    }
    Ok(ChangeOutcome {
        answer: format!("#{} is {}", p.id, p.state),
        incident: inc,
    })
}

/// A try's result: recorded, posted, and what follows (the next try of
/// the plan, the escalation, the recovery re-check).
#[allow(clippy::too_many_arguments)]
pub(super) async fn tried(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    actor: &str,
    id: i64,
    proposal: i64,
    attempt: i64,
    result: &TryResult,
    delivered: Option<i64>,
    effects: &mut Effects,
) -> Result<ChangeOutcome, LedgerError> {
    let inc = load(tx, id).await?;
    let Some(mut p) = tx.tx().proposal(proposal).await? else {
        return Err(LedgerError::NotFound(format!("proposal #{proposal}")));
    };
    if let Some(item) = delivered {
        tx.tx().outbox_delivered(item, now).await?;
    }
    let label = format!("#{} {}", p.id, p.action_id);
    let (tries, waits) = plan_of(p.retry.as_deref());
    let mut run = RunRow {
        proposal_id: p.id,
        attempt,
        idem_key: String::new(),
        state: String::new(),
        started_ms: 0,
        finished_ms: Some(now.0),
        summary: None,
        output: None,
    };
    p.updated_ms = now.0;
    let text = match result {
        TryResult::Unknown { started_ms } => {
            run.state = "unknown".into();
            run.summary = Some("outcome unknown".into());
            tx.tx().finish_run(&run).await?;
            p.state = st::UNKNOWN.into();
            p.reason = Some(format!("try {attempt} sent, result never recorded"));
            tx.tx().update_proposal(&p).await?;
            format!(
                "⚠ {label}: OUTCOME UNKNOWN. Try {attempt} was sent at {} and firstline stopped before recording what happened. It will not be retried by itself: check the target by hand, then propose it again if needed",
                rules.messages.time(Millis(*started_ms))
            )
        }
        TryResult::Changed { now: what } => {
            run.state = "failed".into();
            run.summary = Some("not sent: the action changed".into());
            tx.tx().finish_run(&run).await?;
            p.state = st::CANCELLED.into();
            p.reason = Some(what.clone());
            tx.tx().update_proposal(&p).await?;
            format!(
                "{label} was not run: {what}; the approvals were for what was proposed, so nothing ran; propose it again"
            )
        }
        TryResult::Ran {
            outcome,
            duration_ms,
            verify,
        } => {
            let worked = outcome.ok && verify.as_ref().is_none_or(|(ok, _)| *ok);
            run.state = if outcome.ok { "ok" } else { "failed" }.into();
            run.summary = Some(outcome.summary.clone());
            run.output = Some(outcome.output.clone());
            tx.tx().finish_run(&run).await?;
            let mut text = format!(
                "{label} try {attempt}/{tries}: {} — {}",
                if worked { "done" } else { "FAILED" },
                outcome.summary
            );
            if !outcome.summary.contains(" ms") {
                text.push_str(&format!(" in {duration_ms} ms"));
            }
            if let Some((ok, line)) = verify {
                text.push_str(&format!(
                    "\nhealth check: {} {line}",
                    if *ok { "✓" } else { "✗" }
                ));
            }
            if !outcome.output.trim().is_empty() {
                text.push_str(&format!("\noutput:\n{}", outcome.output.trim_end()));
            }
            let votes = tx.tx().votes(p.id).await?;
            let approvers: Vec<&str> = votes.iter().map(|v| v.actor.as_str()).collect();
            text.push_str(&format!(
                "\nproposed by {}, approved by {}",
                p.proposer,
                approvers.join(", ")
            ));
            if worked {
                p.state = st::SUCCEEDED.into();
                p.reason = None;
                tx.tx().update_proposal(&p).await?;
                let watched =
                    super::apply::start_recovery_watch(tx, rules, now, &inc, effects).await?;
                if watched {
                    text.push_str(
                        "\nre-checking the runbook's recovery criteria now; the verdict follows",
                    );
                } else {
                    p.state = st::VERIFIED.into();
                    tx.tx().update_proposal(&p).await?;
                    text.push_str(
                        "\nthe runbook has no recovery criteria to re-check: watch the alert",
                    );
                }
            } else {
                let retryable = outcome.retryable || p.retry.as_deref() == Some("restart");
                let in_plan = p.retry.is_some();
                // Seed 000 counts failed retries (escalate after the third);
                // seed 003 every failed restart.
                let counted = in_plan && !(p.retry.as_deref() == Some("backoff") && attempt == 1);
                if counted {
                    let what = format!("action {}", p.action_id);
                    let esc = super::escalate::attempt_failed(
                        tx,
                        rules,
                        now,
                        &inc,
                        actor,
                        &what,
                        &outcome.summary,
                        effects,
                    )
                    .await?;
                    if esc.starts_with("escalating") {
                        text.push_str(&format!("\n{esc}"));
                    }
                }
                if retryable && attempt < tries {
                    let wait = waits.get((attempt - 1) as usize).copied().unwrap_or(30_000);
                    p.state = st::RETRYING.into();
                    tx.tx().update_proposal(&p).await?;
                    tx.enqueue_at(
                        Some(inc.id),
                        KIND,
                        &serde_json::to_value(TryPayload {
                            proposal_id: p.id,
                            attempt: attempt + 1,
                        })
                        .unwrap_or_default(),
                        now,
                        Millis(now.0.saturating_add(wait)),
                    )
                    .await?;
                    effects.enqueued += 1;
                    let when = if wait == 0 {
                        "now".to_string()
                    } else {
                        format!("in {} s", wait / 1000)
                    };
                    text.push_str(&format!(
                        "\ntrying again {when} (try {} of {tries}, same approval, same idempotency key)",
                        attempt + 1
                    ));
                } else {
                    p.state = st::FAILED.into();
                    p.reason = Some(outcome.summary.clone());
                    tx.tx().update_proposal(&p).await?;
                    if in_plan && attempt >= tries {
                        text.push_str(&format!(
                            "\nall {tries} tries failed: a person has to take it from here"
                        ));
                    } else if !retryable {
                        text.push_str("\nnot retried: trying again would not change this");
                    }
                }
            }
            text
        }
    };
    record(
        tx,
        &inc,
        now,
        actor,
        &text,
        json!({"op": "tried", "proposal": p.id, "attempt": attempt, "state": p.state, "result": result}),
    )
    .await?;
    say(tx, rules, now, &inc, text.clone(), effects).await?;
    Ok(ChangeOutcome {
        answer: text,
        incident: inc,
    })
}

/// A recovery verdict is in: the changes awaiting it are verified.
pub(super) async fn verified(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    inc: &Incident,
    verdict: &str,
    effects: &mut Effects,
) -> Result<(), LedgerError> {
    for mut p in tx.tx().proposals_of(inc.id).await? {
        if p.state != st::SUCCEEDED {
            continue;
        }
        settle(tx, &mut p, st::VERIFIED, Some(verdict.to_string()), now).await?;
        let text = format!(
            "recovery re-check after #{} {}: {verdict}",
            p.id, p.action_id
        );
        record(
            tx,
            inc,
            now,
            "firstline",
            &text,
            json!({"op": "verified", "proposal": p.id, "verdict": verdict}),
        )
        .await?;
        say(tx, rules, now, inc, text, effects).await?;
    }
    Ok(())
}

/// The incident was resolved: proposals still waiting are cancelled.
pub(super) async fn cancel_open(
    tx: &mut Batch<'_>,
    now: Millis,
    inc: &Incident,
    actor: &str,
) -> Result<(), LedgerError> {
    for mut p in tx.tx().proposals_of(inc.id).await? {
        if p.state != st::PROPOSED {
            continue;
        }
        settle(
            tx,
            &mut p,
            st::CANCELLED,
            Some(format!("{} was resolved", inc.human_id)),
            now,
        )
        .await?;
        record(
            tx,
            inc,
            now,
            actor,
            &format!(
                "#{} {} cancelled: {} was resolved",
                p.id, p.action_id, inc.human_id
            ),
            json!({"op": "cancelled", "proposal": p.id}),
        )
        .await?;
    }
    Ok(())
}
