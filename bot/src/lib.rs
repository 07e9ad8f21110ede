//! firstline: a ChatOps bot for first-line incident response.
//!
//! # Layout
//! The modules follow the flow of an alert (see ARCHITECTURE.md):
//!
//! - [`intake`]: webhook parsing, auth and the answers senders get;
//! - [`incident`]: the single writer (group commit) that turns alerts and
//!   commands into incidents, timeline events and outbox intents;
//! - [`chat`]: the platform seam and the console platform;
//! - [`escalation`]: contacts, rotations and per-severity policies, and
//!   what they mean at an instant (pure; the paging engine builds on it);
//! - [`outbox`]: durable delivery of intents with retries;
//! - [`postmortem`]: Markdown and JSON export;
//! - [`priority`]: incident-making runs below intake;
//! - [`http`]: the axum routers;
//! - [`store`]: SQLite and PostgreSQL (the only module naming sqlx);
//! - [`domain`]: the pure core, no IO;
//! - [`config`], [`telemetry`], [`app`]: wiring;
//! - [`memory`]: freed memory returned to the system;
//! - [`log_limit`]: warnings that could repeat per request, rate-limited;
//! - [`text`]: URL redaction and trimming text to a size (a leaf module);
//! - [`toml_errors`]: every structural problem of a TOML file (config, runbooks).

pub mod action;
pub mod app;
pub mod approval;
pub mod chat;
pub mod config;
pub mod domain;
pub mod escalation;
pub mod http;
pub mod incident;
pub mod intake;
pub mod log_limit;
pub mod memory;
pub mod outbox;
pub mod pager;
pub mod postmortem;
pub mod priority;
pub mod probe;
pub mod runbook;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod toml_errors;
