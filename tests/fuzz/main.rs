//! Property-based fuzzing (proptest) of the code that reads text from
//! outside: the webhook parsers, the chat command grammar and the runbook
//! loader.
//!
//! # What is fuzzed, and what must hold
//!
//! - **Webhook parsers** (`intake::parse`, one target per [`Source`]), fed
//!   arbitrary bytes, token soup that is almost JSON, and the real payloads
//!   of `tests/fixtures/` mutated: values at random paths replaced with
//!   random JSON of any type, keys dropped, inserted or renamed, strings
//!   replaced with unicode, control characters, NUL escapes (`\u0000`),
//!   very long text and odd timestamps, raw fragments a `serde_json::Value`
//!   cannot hold (`1e400`, lone surrogates, invalid UTF-8, nesting past the
//!   recursion limit, keys given twice), and a few byte edits. Properties:
//!   it never panics; a refusal has a non-empty `field` and `message`, and
//!   the field is `body` or a path into the body (`alerts[0].startsAt`,
//!   `alerts[1].labels.severity`, a missing field's name); an accepted
//!   webhook has at least one alert, each of the source asked for, with a
//!   fingerprint and no end time while firing, and no string anywhere in it
//!   (labels, annotations, names, fingerprints, URLs, keys) holds a NUL
//!   character, since the intake refuses NUL so that nothing it accepts
//!   fails to store on PostgreSQL later.
//! - **Chat commands** (`commands::parse`), fed arbitrary strings and lines
//!   built from the grammar's own words (`/incident`, `declare`, `sev`,
//!   `P1`, `INC-12`, `--due=2025-02-29`, quotes of every kind, `key=value`,
//!   unicode whose case mapping changes its length, very long tokens).
//!   Properties: it never panics; an error has a non-empty message that is
//!   lower-case with no trailing period, names a command of the help table
//!   and carries that command's usage line; `help` and `usage` never panic
//!   on any topic, nor for every command and group of the table.
//! - **Runbook loader** (`runbook::load::Catalog::build`), fed the bundled
//!   runbooks mutated line by line (lines deleted, duplicated, swapped,
//!   values replaced with TOML of another type, placeholders, regexes and
//!   conditions that do not compile, text truncated, bytes and unicode
//!   inserted), copies under another name (duplicate ids), and arbitrary
//!   strings. Properties: it never panics; every problem has a non-empty
//!   message, names one of the files it was given (and its `Display` starts
//!   with that name), and any line it gives lies in that file; every file is
//!   either loaded or has at least one problem, never both; loaded ids are
//!   unique.
//!
//! Each target prints the cases it executed and how long they took
//! (`fuzz alertmanager: 1200 cases in 9.8s`), which the README quotes.
//!
//! # Running it longer
//!
//! The default counts keep the whole binary at about a minute in a debug
//! build on two cores. `FIRSTLINE_FUZZ_CASES` sets the cases per target,
//! and `FIRSTLINE_FUZZ_SEED` the seed (a number, or `random`; the default
//! is a fixed seed per target, so a plain run is reproducible):
//!
//! ```text
//! FIRSTLINE_FUZZ_CASES=100000 cargo test -p firstline --release --test fuzz -- --nocapture
//! FIRSTLINE_FUZZ_SEED=random FIRSTLINE_FUZZ_CASES=20000 cargo test -p firstline --release --test fuzz -- --nocapture
//! ```
//!
//! A failure prints the shrunk input; the inputs found so far are kept as
//! plain regression tests next to each target.
//!
//! [`Source`]: firstline::domain::alert::Source

mod commands;
mod intake;
mod runbook;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

/// Cases per target: `FIRSTLINE_FUZZ_CASES`, else `default`.
fn cases(default: u32) -> u32 {
    match std::env::var("FIRSTLINE_FUZZ_CASES") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("FIRSTLINE_FUZZ_CASES={v:?} is not a number of cases")),
        Err(_) => default,
    }
}

/// The seed of a target: `FIRSTLINE_FUZZ_SEED` (a number or `random`), else
/// one fixed per target name, so that a plain run is reproducible.
fn seed(target: &str) -> RngSeed {
    match std::env::var("FIRSTLINE_FUZZ_SEED") {
        Ok(v) if v.trim() == "random" => {
            // Drawn here rather than by proptest, so that it can be printed.
            use std::hash::{BuildHasher, RandomState};
            RngSeed::Fixed(RandomState::new().hash_one(target))
        }
        Ok(v) => RngSeed::Fixed(
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("FIRSTLINE_FUZZ_SEED={v:?} is not a number or random")),
        ),
        // FNV-1a of the name: stable across builds and platforms.
        Err(_) => RngSeed::Fixed(target.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })),
    }
}

/// Runs `property` on `cases` inputs drawn from `strategy` and prints how
/// many ran and what became of them (`property` names the outcome of each
/// case, e.g. `accepted`); on a failure, shrinks the input and panics with
/// it.
fn fuzz<S>(
    target: &str,
    default_cases: u32,
    strategy: S,
    property: impl Fn(S::Value) -> Result<&'static str, String>,
) where
    S: Strategy,
    S::Value: fmt::Debug,
{
    let cases = cases(default_cases);
    let seed = seed(target);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        rng_seed: seed,
        max_shrink_time: 60_000,
        ..Config::default()
    });
    let executed = AtomicU64::new(0);
    let outcomes = Mutex::new(BTreeMap::<&'static str, u64>::new());
    let started = Instant::now();
    let result = runner.run(&strategy, |input| {
        executed.fetch_add(1, Ordering::Relaxed);
        let outcome = property(input).map_err(TestCaseError::fail)?;
        *outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(outcome)
            .or_default() += 1;
        Ok(())
    });
    let n = executed.load(Ordering::Relaxed);
    let took = secs(started.elapsed());
    let outcomes = outcomes
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(outcome, count)| format!("{outcome} {count}"))
        .collect::<Vec<_>>()
        .join(", ");
    match result {
        Ok(()) => eprintln!("fuzz {target}: {n} cases in {took} (seed {seed}; {outcomes})"),
        Err(e) => {
            eprintln!(
                "fuzz {target}: {n} cases, shrinking included, in {took} (seed {seed}; {outcomes})"
            );
            panic!("fuzz {target} (seed {seed}): {e}");
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Bytes shown as text (lossily, escaped, cut short) in failure reports.
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show(f, &String::from_utf8_lossy(&self.0), self.0.len())
    }
}

/// A string shown escaped and cut short in failure reports.
#[derive(Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show(f, &self.0, self.0.len())
    }
}

fn show(f: &mut fmt::Formatter<'_>, text: &str, len: usize) -> fmt::Result {
    const MAX_CHARS: usize = 4_000;
    if text.chars().count() <= MAX_CHARS {
        write!(f, "{text:?}")
    } else {
        let head: String = text.chars().take(MAX_CHARS).collect();
        write!(f, "{head:?}... ({len} bytes in all)")
    }
}
