//! Integration tests: one binary, the real server on a loopback port, real
//! SQLite and PostgreSQL. See helpers.rs for the harness.

mod actions;
mod auth;
mod chat_commands;
mod config_cli;
mod discord;
mod discord_autocomplete;
mod discord_limits;
mod e2e;
mod escalation;
mod fake_discord;
mod fake_pagers;
mod fake_slack;
mod findings_truth;
mod hardening;
mod helpers;
mod intake;
mod limits;
mod oncall;
mod outbox;
mod pagers;
mod probes_data;
mod probes_http;
mod probes_sql_safety;
mod restart;
mod run_speed;
mod runbook_cli;
mod runbooks;
mod slack;
mod slack_actions;
mod slack_channels;
mod slack_socket;
mod store_contract;
mod storm;
