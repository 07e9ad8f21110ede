//! The evaluation at fixed instants: plans per severity, repeats and
//! exhaustion, business hours across zones and DST changes, hand-offs,
//! overrides, skipped contacts.

use std::collections::BTreeMap;

use chrono_tz::Tz;

use super::model::{Escalation, PageChannel, Target};
use super::policy::{Cause, Next, Recipient, SkipReason, Unavailable, local_instant};
use crate::config::escalation::build;
use crate::config::{ContactSettings, PolicySettings, RotationSettings};
use crate::domain::Severity;
use crate::domain::time::Millis;

/// The model from TOML, as `check-config` would build it; panics with
/// every problem when it does not build.
fn model(text: &str) -> Escalation {
    #[derive(serde::Deserialize)]
    struct Doc {
        #[serde(default)]
        contacts: BTreeMap<String, ContactSettings>,
        #[serde(default)]
        rotations: BTreeMap<String, RotationSettings>,
        #[serde(default)]
        escalation: BTreeMap<String, PolicySettings>,
    }
    let doc: Doc = toml::from_str(text).expect("test TOML");
    let mut problems = Vec::new();
    build(
        &doc.contacts,
        &doc.rotations,
        &doc.escalation,
        Tz::UTC,
        "console",
        &mut |k: &str, m: String| problems.push(format!("{k}: {m}")),
    )
    .unwrap_or_else(|| panic!("{problems:#?}"))
}

fn at(rfc3339: &str) -> Millis {
    Millis::parse_rfc3339(rfc3339)
        .expect("RFC 3339")
        .expect("after 1970")
}

const MIN: i64 = 60_000;

/// Seed 003: the tech lead (24/7), the DevOps engineer (business hours),
/// the DBA (on call), a team lead for P2; P1 within 5 minutes starting
/// with the tech lead, P2 15 minutes via the team lead, P3 1 hour through
/// the assignee.
const SEED_003: &str = r#"
[contacts.tech_lead]
name = "テックリード"
timezone = "Asia/Tokyo"
availability = "24/7"
email = "tech-lead@example.com"
phone = "+81-90-0000-0000"
page_via = ["chat_dm", "phone_sms", "email"]

[contacts.team_lead]
timezone = "Asia/Tokyo"
availability = "24/7"
slack = "U0TEAMLEAD"

[contacts.devops_engineer]
name = "DevOpsエンジニア"
timezone = "Asia/Tokyo"
availability = "business_hours"
business_hours = ["Mon-Fri 09:00-18:00"]

[contacts.database_admin]
timezone = "Asia/Tokyo"
availability = "on_call"

[rotations.primary]
members = ["database_admin", "tech_lead"]
handoff = "weekly Mon 10:00 Asia/Tokyo"
start = "2026-12-07"

[escalation.P1]
steps = [
  { page = ["tech_lead"], ack_within = "5m" },
  { page = ["rotation:primary", "devops_engineer", "channel"], ack_within = "5m" },
]
repeat = 2

[escalation.P2]
steps = [{ page = ["team_lead"], ack_within = "15m" }, { page = ["rotation:primary"], ack_within = "15m" }]

[escalation.P3]
steps = [{ page = ["assignee", "channel"], ack_within = "1h" }]
"#;

#[test]
fn a_p1_plan_pages_every_five_minutes_through_three_rounds_then_is_exhausted() {
    let esc = model(SEED_003);
    let p1 = esc.policy(Severity::P1).expect("P1 policy");
    let start = at("2026-12-08T03:00:00Z");

    let plan = p1.plan(start);

    let dues: Vec<i64> = plan
        .steps
        .iter()
        .map(|s| (s.due.0 - start.0) / MIN)
        .collect();
    assert_eq!(dues, [0, 5, 10, 15, 20, 25]);
    let rounds: Vec<(u32, usize)> = plan.steps.iter().map(|s| (s.round, s.step)).collect();
    assert_eq!(rounds, [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]);
    assert_eq!(plan.exhausted_at.0 - start.0, 30 * MIN);
    assert_eq!(plan.steps[3].deadline.0 - start.0, 20 * MIN);
    assert_eq!(
        p1.next_after(start, 5),
        Some(Next::Exhausted {
            at: Millis(start.0 + 30 * MIN)
        })
    );
    assert_eq!(p1.next_after(start, 6), None);
    assert_eq!(p1.step_at(start, 6), None);
}

#[test]
fn a_p2_plan_waits_fifteen_minutes_a_step_and_a_p3_plan_an_hour() {
    let esc = model(SEED_003);
    let start = at("2026-12-08T03:00:00Z");

    let p2 = esc.policy(Severity::P2).expect("P2").plan(start);
    let p3 = esc.policy(Severity::P3).expect("P3").plan(start);

    let dues = |p: &super::Plan| -> Vec<i64> {
        p.steps.iter().map(|s| (s.due.0 - start.0) / MIN).collect()
    };
    assert_eq!(dues(&p2), [0, 15]);
    assert_eq!(p2.exhausted_at.0 - start.0, 30 * MIN);
    assert_eq!(dues(&p3), [0]);
    assert_eq!(p3.exhausted_at.0 - start.0, 60 * MIN);
}

#[test]
fn the_step_in_force_is_the_last_one_due_and_none_once_exhausted() {
    let esc = model(SEED_003);
    let p1 = esc.policy(Severity::P1).expect("P1");
    let start = at("2026-12-08T03:00:00Z");

    let k = |t: i64| p1.current(start, Millis(start.0 + t)).map(|s| s.k);

    assert_eq!(k(0), Some(0));
    assert_eq!(k(5 * MIN - 1), Some(0));
    assert_eq!(k(5 * MIN), Some(1));
    assert_eq!(k(29 * MIN), Some(5));
    assert_eq!(k(30 * MIN), None);
    assert_eq!(k(-1), None);
}

#[test]
fn a_p1_step_at_night_skips_the_business_hours_engineer_with_the_reason() {
    let esc = model(SEED_003);
    let start = at("2026-12-12T17:00:00Z"); // Sunday 02:00 in Tokyo

    let (step, resolved) = esc
        .step_due(Severity::P1, start, 1, Millis(start.0 + 5 * MIN), None)
        .expect("step 1");

    assert_eq!(step.due.0 - start.0, 5 * MIN);
    // The week of 2026-12-07 is database_admin's turn (start date).
    assert_eq!(
        resolved.pages.iter().map(|p| &p.to).collect::<Vec<_>>(),
        [
            &Recipient::Contact {
                id: "database_admin".into(),
                via: vec![PageChannel::ChatDm]
            },
            &Recipient::Channel
        ]
    );
    assert_eq!(resolved.skipped.len(), 1);
    let skipped = &resolved.skipped[0];
    assert_eq!(skipped.contact.as_deref(), Some("devops_engineer"));
    assert_eq!(
        skipped.reason.to_string(),
        "outside business hours (Mon-Fri 09:00-18:00 Asia/Tokyo); it is Sun 02:05 JST there"
    );
}

#[test]
fn the_same_step_in_office_hours_pages_the_engineer_too() {
    let esc = model(SEED_003);
    let t = at("2026-12-08T01:30:00Z"); // Tuesday 10:30 in Tokyo

    let (_, resolved) = esc.step_due(Severity::P1, t, 1, t, None).expect("step 1");

    assert!(resolved.skipped.is_empty(), "{:?}", resolved.skipped);
    assert_eq!(resolved.pages.len(), 3);
    assert_eq!(
        resolved.pages[1].because,
        Target::Contact("devops_engineer".into())
    );
}

#[test]
fn a_contact_reached_through_two_targets_is_paged_once() {
    let esc = model(SEED_003);
    // Week of 2026-12-14: tech_lead's turn in primary.
    let t = at("2026-12-15T01:30:00Z");
    let step = super::Step {
        targets: vec![
            Target::Contact("tech_lead".into()),
            Target::Rotation("primary".into()),
        ],
        ack_within_ms: 5 * MIN,
    };

    let resolved = esc.resolve(&step, t, None);

    assert_eq!(resolved.pages.len(), 1);
    assert_eq!(
        resolved.pages[0].because,
        Target::Contact("tech_lead".into())
    );
}

#[test]
fn the_assignee_is_skipped_until_there_is_one_then_matched_to_a_contact_by_chat_id() {
    let esc = model(SEED_003);
    let t = at("2026-12-08T01:30:00Z");
    let policy = esc.policy(Severity::P3).expect("P3");
    let step = policy.step(0).expect("step 0");

    let nobody = esc.resolve(step, t, None);
    let known = esc.resolve(step, t, Some("U0TEAMLEAD"));
    let stranger = esc.resolve(step, t, Some("sam"));

    assert_eq!(nobody.skipped[0].reason, SkipReason::NoAssignee);
    assert_eq!(
        nobody.pages,
        [super::Page {
            to: Recipient::Channel,
            because: Target::Channel
        }]
    );
    assert!(matches!(&known.pages[0].to, Recipient::Contact { id, .. } if id == "team_lead"));
    assert_eq!(
        stranger.pages[0].to,
        Recipient::ChatUser { user: "sam".into() }
    );
}

#[test]
fn an_on_call_contact_is_available_only_during_a_turn() {
    let esc = model(SEED_003);
    let dba = &esc.contacts["database_admin"];

    // Turns hand over on Monday 10:00 JST = 01:00Z.
    assert_eq!(esc.availability_at(dba, at("2026-12-14T00:59:59Z")), Ok(()));
    assert_eq!(
        esc.availability_at(dba, at("2026-12-14T01:00:00Z")),
        Err(Unavailable::NotOnCall)
    );
    assert_eq!(esc.availability_at(dba, at("2026-12-21T01:00:00Z")), Ok(()));
}

const TWO_ZONES: &str = r#"
[contacts.tokyo]
timezone = "Asia/Tokyo"
availability = "business_hours"
business_hours = ["Mon-Fri 09:00-18:00"]

[contacts.new_york]
timezone = "America/New_York"
availability = "business_hours"
business_hours = ["Mon-Fri 09:00-18:00"]

[contacts.berlin]
timezone = "Europe/Berlin"
availability = "business_hours"
business_hours = ["Mon-Fri 09:00-17:00", "Sat 10:00-12:00"]
"#;

#[test]
fn business_hours_are_read_in_each_contacts_own_zone() {
    let esc = model(TWO_ZONES);
    let t = at("2026-12-07T01:00:00Z"); // Mon 10:00 Tokyo, Sun 20:00 New York

    assert_eq!(esc.availability_at(&esc.contacts["tokyo"], t), Ok(()));
    let ny = esc.availability_at(&esc.contacts["new_york"], t);
    assert_eq!(
        ny.map_err(|e| e.to_string()),
        Err("outside business hours (Mon-Fri 09:00-18:00 America/New_York); it is Sun 20:00 EST there".into())
    );
}

#[test]
fn business_hours_follow_new_york_across_the_march_dst_change() {
    let esc = model(TWO_ZONES);
    let ny = &esc.contacts["new_york"];

    // 13:00Z is 08:00 EST on Friday 6 March, and 09:00 EDT on Monday 9
    // March (clocks went forward on Sunday 8 March).
    assert!(esc.availability_at(ny, at("2026-03-06T13:00:00Z")).is_err());
    assert!(esc.availability_at(ny, at("2026-03-06T14:00:00Z")).is_ok());
    assert!(esc.availability_at(ny, at("2026-03-09T13:00:00Z")).is_ok());
    assert!(esc.availability_at(ny, at("2026-03-09T12:59:00Z")).is_err());
}

#[test]
fn business_hours_follow_berlin_across_the_october_dst_change() {
    let esc = model(TWO_ZONES);
    let berlin = &esc.contacts["berlin"];

    // 16:30Z is 18:30 CEST on Friday 23 October and 17:30 CET on Monday
    // 26 October (clocks went back on Sunday 25 October): both after 17:00.
    // 15:30Z is 17:30 CEST before, 16:30 CET after.
    assert!(
        esc.availability_at(berlin, at("2026-10-23T15:30:00Z"))
            .is_err()
    );
    assert!(
        esc.availability_at(berlin, at("2026-10-26T15:30:00Z"))
            .is_ok()
    );
    assert!(
        esc.availability_at(berlin, at("2026-10-26T16:00:00Z"))
            .is_err()
    );
    // The second window: Saturday 10:00-12:00 local.
    assert!(
        esc.availability_at(berlin, at("2026-10-24T08:30:00Z"))
            .is_ok()
    );
    assert!(
        esc.availability_at(berlin, at("2026-10-31T08:30:00Z"))
            .is_err()
    );
    assert!(
        esc.availability_at(berlin, at("2026-10-31T09:30:00Z"))
            .is_ok()
    );
}

#[test]
fn an_overnight_window_runs_into_the_next_morning() {
    let esc = model(
        r#"
[contacts.night]
availability = "business_hours"
business_hours = ["Fri 22:00-06:00"]
"#,
    );
    let night = &esc.contacts["night"];

    assert!(
        esc.availability_at(night, at("2026-12-11T23:00:00Z"))
            .is_ok()
    ); // Fri
    assert!(
        esc.availability_at(night, at("2026-12-12T05:59:00Z"))
            .is_ok()
    ); // Sat
    assert!(
        esc.availability_at(night, at("2026-12-12T06:00:00Z"))
            .is_err()
    );
    assert!(
        esc.availability_at(night, at("2026-12-12T23:00:00Z"))
            .is_err()
    ); // Sat
}

const ROTATIONS: &str = r#"
[contacts.ann]
availability = "24/7"
[contacts.bob]
availability = "24/7"
[contacts.cat]
availability = "24/7"

[rotations.weekly]
members = ["ann", "bob"]
handoff = "weekly Mon 10:00 Asia/Tokyo"
start = "2026-12-07"
overrides = [{ who = "cat", from = "2026-12-24T18:00:00+09:00", to = "2026-12-26T09:00:00+09:00" }]

[rotations.daily]
members = ["ann", "bob", "cat"]
handoff = "daily 09:00 Europe/Berlin"
start = "2026-10-20"
"#;

#[test]
fn a_weekly_rotation_hands_over_on_its_day_and_time_in_its_zone() {
    let esc = model(ROTATIONS);
    let weekly = &esc.rotations["weekly"];

    let shift = weekly.shift_at(at("2026-12-07T01:00:00Z")); // Mon 10:00 JST

    assert_eq!(shift.who, "ann");
    assert_eq!(shift.cause, Cause::Turn);
    assert_eq!(shift.since, at("2026-12-07T01:00:00Z"));
    assert_eq!(shift.until, Some(at("2026-12-14T01:00:00Z")));
    assert_eq!(weekly.who_at(at("2026-12-07T00:59:59Z")).0, "bob");
    let next = weekly
        .next_shift(at("2026-12-07T01:00:00Z"))
        .expect("bob next");
    assert_eq!(
        (next.who.as_str(), next.since),
        ("bob", at("2026-12-14T01:00:00Z"))
    );
}

#[test]
fn a_daily_rotation_hands_over_at_nine_local_across_the_october_dst_change() {
    let esc = model(ROTATIONS);
    let daily = &esc.rotations["daily"];

    // 09:00 in Berlin is 07:00Z in summer time and 08:00Z after 25 October.
    let sat = daily.shift_at(at("2026-10-24T12:00:00Z"));
    let mon = daily.shift_at(at("2026-10-26T07:30:00Z"));

    assert_eq!(sat.since, at("2026-10-24T07:00:00Z"));
    assert_eq!(sat.until, Some(at("2026-10-25T08:00:00Z")));
    assert_eq!(mon.since, at("2026-10-25T08:00:00Z"));
    assert_eq!(mon.until, Some(at("2026-10-26T08:00:00Z")));
    // Turn order from the start date (Tue 20 October: ann).
    assert_eq!(daily.who_at(at("2026-10-20T07:00:00Z")).0, "ann");
    assert_eq!(daily.who_at(at("2026-10-24T12:00:00Z")).0, "bob");
    assert_eq!(sat.who, "bob");
    assert_eq!(mon.who, "cat");
}

#[test]
fn an_override_wins_over_the_rotation_and_hands_back_when_it_ends() {
    let esc = model(ROTATIONS);
    let weekly = &esc.rotations["weekly"];
    // The week of 21 December is ann's (ann, bob, ann from 7 December);
    // cat stands in over Christmas.

    let before = weekly.shift_at(at("2026-12-23T00:00:00Z"));
    let during = weekly.shift_at(at("2026-12-25T00:00:00Z"));
    let after = weekly
        .next_shift(at("2026-12-25T00:00:00Z"))
        .expect("ann again");

    assert_eq!(before.who, "ann");
    assert_eq!(before.until, Some(at("2026-12-24T09:00:00Z")));
    assert_eq!(during.who, "cat");
    assert_eq!(during.cause, Cause::Override(0));
    assert_eq!(during.since, at("2026-12-24T09:00:00Z"));
    assert_eq!(during.until, Some(at("2026-12-26T00:00:00Z")));
    assert_eq!((after.who.as_str(), after.cause), ("ann", Cause::Turn));
    assert_eq!(after.until, Some(at("2026-12-28T01:00:00Z")));
}

#[test]
fn a_hand_off_in_a_spring_forward_gap_moves_past_the_gap() {
    let date = chrono::NaiveDate::from_ymd_opt(2026, 3, 8).expect("date");
    let time = chrono::NaiveTime::from_hms_opt(2, 30, 0).expect("time");

    let t = local_instant(chrono_tz::America::New_York, date, time);

    // 02:30 does not exist that night; read as EST it is 07:30Z (03:30 EDT).
    assert_eq!(t, at("2026-03-08T07:30:00Z"));
}

#[test]
fn a_one_person_rotation_has_nobody_next() {
    let esc = model(
        r#"
[contacts.solo]
availability = "24/7"
[rotations.alone]
members = ["solo"]
handoff = "daily 09:00"
"#,
    );

    let shift = esc.rotations["alone"].shift_at(at("2026-12-07T12:00:00Z"));

    assert_eq!(shift.who, "solo");
    assert_eq!(shift.until, None);
}
