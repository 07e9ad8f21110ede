//! `firstline`: thin over the library. Parses the command line, loads the
//! configuration, and runs one of the subcommands.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use firstline::app::{self, App};
use firstline::chat::console::Sink;
use firstline::chat::messages::{Messages, response_times_line};
use firstline::config::{self, Config, SlackMode};
use firstline::postmortem;
use firstline::store::IncidentFilter;
use firstline::telemetry;

/// mimalloc instead of glibc's malloc: intake allocates and frees many
/// short-lived buffers (bodies, JSON, rows) across threads, where glibc's
/// arenas spent ~30 % of the server's CPU under load (perf, batched intake).
/// Built with `no_thp`: transparent huge pages on its arenas doubled idle
/// RSS (~47 MB against ~25 MB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// firstline: ChatOps for first-line incident response.
#[derive(Debug, Parser)]
#[command(name = "firstline", version, about)]
struct Cli {
    /// Configuration file (TOML). Without one, the embedded default is used:
    /// SQLite firstline.db here, console chat, HTTP on 127.0.0.1:8080.
    #[arg(long, global = true, env = "FIRSTLINE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the bot.
    Serve,
    /// Validate the configuration and explain every error.
    CheckConfig,
    /// Apply database migrations to the configured store.
    Migrate,
    /// Read incidents from the store.
    #[command(subcommand)]
    Incident(IncidentCmd),
    /// List, show, lint and run runbooks.
    #[command(subcommand)]
    Runbook(RunbookCmd),
    /// Discord: register the slash commands.
    #[command(subcommand)]
    Discord(DiscordCmd),
}

#[derive(Debug, Subcommand)]
enum DiscordCmd {
    /// Register the slash commands for [chat.discord]'s guild, generated
    /// from the command grammar (replaces the guild's commands: running it
    /// again changes nothing).
    Register,
}

#[derive(Debug, Subcommand)]
enum RunbookCmd {
    /// List the loaded runbooks (bundled and from runbooks.dirs).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one runbook: its checks in order, actions and recovery criteria.
    Show {
        /// The runbook's id (`firstline runbook list` shows them).
        id: String,
    },
    /// Lint runbook files (default: every loaded runbook) against the
    /// configured targets; prints file:line: problem, exit code 1 on any.
    Lint {
        /// A runbook file or a folder of them (default: every loaded runbook).
        path: Option<PathBuf>,
    },
    /// Run a runbook's checks now against the configured targets.
    Run {
        /// The runbook's id (`firstline runbook list` shows them).
        id: String,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
        /// Alert labels for placeholders, e.g. --label workflow_id=abc.
        #[arg(long = "label", value_name = "NAME=VALUE")]
        labels: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum IncidentCmd {
    /// List incidents (open ones unless --all).
    List {
        /// Resolved incidents too.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one incident with its response times.
    Show {
        /// INC-42 or 42.
        id: String,
        /// Print JSON (the incident and its response times).
        #[arg(long)]
        json: bool,
    },
    /// Print the postmortem of an incident.
    Export {
        /// INC-42 or 42.
        id: String,
        /// md: Markdown for the postmortem document; json: for tools.
        #[arg(long, value_enum, default_value = "md")]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Md,
    Json,
}

fn main() -> ExitCode {
    firstline::memory::purge_freed_memory_at_once();
    let cli = Cli::parse();
    let config = match config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            let source = cli
                .config
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "defaults".into());
            eprintln!(
                "firstline: the configuration ({source}) has {} problem(s):",
                errors.0.len()
            );
            for e in &errors.0 {
                eprintln!("  - {e}");
            }
            return ExitCode::from(2);
        }
    };
    if let Cmd::CheckConfig = cli.command {
        return check_config(&config);
    }
    telemetry::init_logs(&config.settings.log.format, &config.settings.log.level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("firstline: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("firstline: {e:#}");
            ExitCode::FAILURE
        }
    };
    // The console's stdin reader sits in a blocking read that nothing can
    // interrupt; dropping the runtime would wait for it (for Enter) after
    // Ctrl-C or SIGTERM. Everything that matters has stopped by now.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

fn check_config(config: &Config) -> ExitCode {
    let s = &config.settings;
    let source = config
        .file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "embedded default".into());
    println!("configuration OK ({source})");
    println!("  store:    {}", firstline::text::redact_url(&s.store.url));
    println!("  http:     {}", config.listen);
    let mode = match config.slack.as_ref().map(|slack| &slack.mode) {
        Some(SlackMode::Http { .. }) => " (HTTP mode: Slack calls /slack/*)",
        Some(SlackMode::Socket { .. }) => " (Socket Mode: firstline connects to Slack)",
        None => "",
    };
    println!(
        "  chat:     {}{mode} in {}",
        s.chat.platform, s.chat.channel
    );
    println!("  timezone: {}", config.timezone);
    println!("  grouping: {}", s.incidents.group_by.join(", "));
    let tokens: Vec<&str> = config.tokens.keys().map(String::as_str).collect();
    println!(
        "  intake tokens: {}",
        if tokens.is_empty() {
            "none (intake is open)".to_string()
        } else {
            tokens.join(", ")
        }
    );
    println!(
        "  api:      {}",
        match config.api_tokens.len() {
            0 => "open: no server.api_tokens".to_string(),
            n => format!("{n} bearer token(s) (server.api_tokens)"),
        }
    );
    println!(
        "  console:  {}",
        match (config.console.mounted, &config.console.token) {
            (false, _) => "/console/* off (chat.console.enabled = false)",
            (true, None) => "/console/* open: no chat.console.token, reactions vouch for no one",
            (true, Some(_)) => "/console/* with a bearer token (chat.console.token)",
        }
    );
    let esc = &config.escalation;
    let policies: Vec<String> = firstline::domain::Severity::ALL
        .iter()
        .map(|sev| match esc.policy(*sev) {
            Some(p) => format!(
                "{sev} {} step{} x{} round{} (exhausted after {})",
                p.steps.len(),
                if p.steps.len() == 1 { "" } else { "s" },
                p.repeat + 1,
                if p.repeat == 0 { "" } else { "s" },
                firstline::domain::incident::format_duration(
                    p.exhausted_at(firstline::domain::time::Millis(0)).0
                )
            ),
            None => format!("{sev} none"),
        })
        .collect();
    let p = &config.pagers;
    let pagers: Vec<&str> = [
        ("email", p.email.is_some()),
        ("phone", p.phone.is_some()),
        ("pagerduty", p.pagerduty.is_some()),
        ("webhook", p.webhook.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    println!(
        "  escalation: {} contact(s), {} rotation(s); {}; pagers: {}",
        esc.contacts.len(),
        esc.rotations.len(),
        policies.join(", "),
        if pagers.is_empty() {
            "chat only".to_string()
        } else {
            format!("chat, {}", pagers.join(", "))
        }
    );
    let a = &config.approval;
    let roles: Vec<String> = a
        .roles
        .iter()
        .map(|(name, members)| format!("{name} ({})", members.len()))
        .collect();
    println!(
        "  actions: roles {}; default approvers {}; quorum {}{}; :{}: approves, :{}: rejects; proposals expire after {}; commands: {}",
        if roles.is_empty() {
            "none (no action can be approved)".to_string()
        } else {
            roles.join(", ")
        },
        if a.default_approvers.is_empty() {
            "none".to_string()
        } else {
            a.default_approvers.join(", ")
        },
        a.quorum,
        if a.two_person_p1 {
            ", two people on a P1"
        } else {
            ""
        },
        a.approve_emoji,
        a.reject_emoji,
        firstline::domain::incident::format_duration(a.expire_ms),
        if config.action_env.commands.is_empty() {
            "none".to_string()
        } else {
            config
                .action_env
                .commands
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    ExitCode::SUCCESS
}

async fn run(command: Cmd, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Cmd::Serve => {
            let typing = config.settings.chat.console_stdin && std::io::stdin().is_terminal();
            let shutdown = shutdown_signal();
            let app = App::build(config, Sink::Stdout).await?;
            eprintln!(
                "firstline listening on http://{} — send alerts to /hooks/alertmanager{}",
                app.local_addr()?,
                if typing {
                    "; type /help for commands"
                } else {
                    ""
                }
            );
            app.run(shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Migrate => {
            let lock = app::lock_store(&config).await?;
            let store = app::open_store(&config).await?;
            println!(
                "migrations applied to {} ({})",
                firstline::text::redact_url(&config.settings.store.url),
                store.backend()
            );
            store.close().await;
            lock.release().await;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Incident(cmd) => incident(cmd, config).await,
        Cmd::Runbook(cmd) => runbook(cmd, config).await,
        Cmd::CheckConfig => Ok(check_config(&config)),
        Cmd::Discord(DiscordCmd::Register) => discord_register(&config).await,
    }
}

async fn discord_register(config: &Config) -> anyhow::Result<ExitCode> {
    use firstline::chat::discord::{Discord, register};
    let Some(d) = &config.discord else {
        anyhow::bail!(
            "no Discord application configured: set chat.platform = \"discord\" with a [chat.discord] section (bot_token, application_id, public_key, guild_id)"
        );
    };
    let discord = Discord::new(d).map_err(anyhow::Error::msg)?;
    match register::register(&discord, d.guild_id).await {
        Ok(summary) => {
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("firstline: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn incident(cmd: IncidentCmd, config: Config) -> anyhow::Result<ExitCode> {
    let url = &config.settings.store.url;
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        && !path.starts_with(':')
        && !std::path::Path::new(path.split('?').next().unwrap_or(path)).exists()
    {
        anyhow::bail!(
            "no database at {path}: run `firstline serve` (or `firstline migrate`) first, or pass --config"
        );
    }
    // Read-only: no lock, no migrations, no writes, so it runs beside `serve`.
    let store = app::open_store_read_only(&config).await?;
    let messages = Messages::new(config.timezone);
    let parse = |raw: &str| -> anyhow::Result<i64> {
        raw.parse::<commands::IncidentRef>()
            .map(|r| r.0)
            .map_err(|_| anyhow::anyhow!("{raw:?} is not an incident id like INC-42"))
    };
    let code = match cmd {
        IncidentCmd::List { all, json } => {
            let filter = if all {
                IncidentFilter::All
            } else {
                IncidentFilter::Open
            };
            let incidents = store.incidents(filter, 1000).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&incidents)?);
            } else if incidents.is_empty() {
                println!(
                    "{}",
                    if all {
                        "no incidents"
                    } else {
                        "no open incidents (--all shows resolved ones)"
                    }
                );
            } else {
                for i in incidents {
                    println!(
                        "{:<8} {} {:<12} {}  {}",
                        i.human_id,
                        i.severity,
                        i.state.as_str(),
                        messages.time(i.detected),
                        i.title
                    );
                }
            }
            ExitCode::SUCCESS
        }
        IncidentCmd::Show { id, json } => {
            let id = parse(&id)?;
            let inc = store
                .incident(id)
                .await?
                .with_context(|| format!("INC-{id} does not exist"))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"incident": inc, "response_times": inc.milestones().response_times()})
                    )?
                );
            } else {
                println!("{} [{}] {}", inc.human_id, inc.severity, inc.title);
                println!("state:    {}", inc.state);
                println!("detected: {}", messages.time(inc.detected));
                if let Some(s) = inc.impact_start {
                    println!("impact:   since {}", messages.time(s));
                }
                let times = response_times_line(&inc);
                if !times.is_empty() {
                    println!("times:    {times}");
                }
                println!("group:    {}", inc.group_key);
            }
            ExitCode::SUCCESS
        }
        IncidentCmd::Export { id, format } => {
            let id = parse(&id)?;
            let doc = postmortem::build(&store, id)
                .await?
                .with_context(|| format!("INC-{id} does not exist"))?;
            match format {
                Format::Md => print!("{}", postmortem::markdown(&doc, &messages)),
                Format::Json => println!("{}", postmortem::json(&doc)),
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

async fn runbook(cmd: RunbookCmd, config: Config) -> anyhow::Result<ExitCode> {
    use firstline::runbook::load::{Catalog, read_dir};
    use firstline::runbook::run::{self, RunContext};
    let rb = &config.settings.runbooks;
    if let RunbookCmd::Lint { path } = &cmd {
        let mut sources = Vec::new();
        let mut problems = Vec::new();
        match path {
            Some(p) => read_dir(p, &mut sources, &mut problems),
            None => {
                if rb.bundled {
                    sources.extend(firstline::runbook::load::bundled_sources());
                }
                for d in &rb.dirs {
                    read_dir(d, &mut sources, &mut problems);
                }
            }
        }
        let commands: std::collections::BTreeSet<String> =
            config.settings.actions.commands.keys().cloned().collect();
        let (catalog, more) =
            Catalog::build_checked(&sources, Some(&config.settings.targets), Some(&commands));
        problems.extend(more);
        for p in &problems {
            println!("{p}");
        }
        let warnings = problems.iter().filter(|p| p.warning).count();
        let errors = problems.len() - warnings;
        println!(
            "{} runbook file(s): {} loadable, {errors} problem(s), {warnings} warning(s){}",
            sources.len(),
            catalog.entries.len(),
            match (config.settings.targets.is_empty(), commands.is_empty()) {
                (true, true) => {
                    " (no [targets] and no [actions.commands] configured: every target and command counts as unknown; see templates/runbooks/targets.example.toml)"
                }
                (true, false) => {
                    " (no [targets] configured: every target counts as unknown; see templates/runbooks/targets.example.toml)"
                }
                (false, true) => {
                    " (no [actions.commands] configured: every command counts as unknown; see templates/runbooks/targets.example.toml)"
                }
                (false, false) => "",
            }
        );
        return Ok(if errors == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let (catalog, problems) = Catalog::load(rb.bundled, &rb.dirs, None);
    for p in &problems {
        eprintln!("left out: {p}");
    }
    let find = |id: &str| {
        catalog.get(id).ok_or_else(|| {
            anyhow::anyhow!("no runbook {id:?}; `firstline runbook list` shows the ids")
        })
    };
    match cmd {
        RunbookCmd::List { json } => {
            if json {
                let list: Vec<_> = catalog
                    .entries
                    .iter()
                    .map(|e| serde_json::json!({"id": e.runbook.id, "title": e.runbook.title, "title_en": e.runbook.title_en,
                        "severity": e.runbook.severity, "source": e.runbook.source, "failure_modes": e.runbook.failure_modes,
                        "checks": e.runbook.checks.len(), "file": e.file}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for e in &catalog.entries {
                    let r = &e.runbook;
                    println!(
                        "{:<40} {} {:>2} checks  {} — {}",
                        r.id,
                        r.severity,
                        r.checks.len(),
                        r.title_en,
                        r.title
                    );
                }
            }
        }
        RunbookCmd::Show { id } => {
            let e = find(&id)?;
            let r = &e.runbook;
            println!("{} [{}] {}\n{}", r.id, r.severity, r.title, r.title_en);
            println!(
                "source: {} §{}  ({})",
                r.source.seed, r.source.section, e.file
            );
            if !r.failure_modes.is_empty() {
                println!("failure modes: {}", r.failure_modes.join(", "));
            }
            if let Some(s) = &r.summary {
                println!("\n{s}");
            }
            println!("\nchecks, in order:");
            for (i, c) in r.checks.iter().enumerate() {
                println!(
                    "  {}. {} [{} → {}]",
                    i + 1,
                    c.title,
                    c.probe.kind(),
                    c.probe.target()
                );
                for x in &c.expect {
                    let conds: Vec<String> = [("warn if", &x.warn_if), ("fail if", &x.fail_if)]
                        .iter()
                        .filter_map(|(w, c)| c.as_ref().map(|c| format!("{w} {} {c}", x.path)))
                        .collect();
                    let missing = match &x.missing {
                        None => String::new(),
                        Some(firstline::runbook::model::Missing::Number(n)) => {
                            format!("; no value counts as {n}")
                        }
                        Some(firstline::runbook::model::Missing::Word(w)) => {
                            format!("; no value counts as {w}")
                        }
                    };
                    println!("     {}{missing}", conds.join("; "));
                }
            }
            if !r.verdicts.is_empty() {
                println!("\nverdicts (the first that holds ends the findings post):");
                for v in &r.verdicts {
                    let when: Vec<String> = v
                        .when
                        .iter()
                        .map(|c| match (&c.status, &c.path, &c.is) {
                            (Some(st), _, _) => format!("{} {st}", c.checks.join(", ")),
                            (None, Some(p), Some(is)) => {
                                format!("{}: {p} {is}", c.checks.join(", "))
                            }
                            _ => c.checks.join(", "),
                        })
                        .collect();
                    println!(
                        "  - {}: {}{}",
                        if when.is_empty() {
                            "otherwise".to_string()
                        } else {
                            format!("when {}", when.join(" and "))
                        },
                        v.title_en.as_deref().unwrap_or(&v.title),
                        v.action
                            .as_deref()
                            .map(|a| format!(" → action {a}"))
                            .unwrap_or_default()
                    );
                }
            }
            if !r.actions.is_empty() {
                println!(
                    "\nfirst-response actions (reversible first; each runs only once approved):"
                );
                for a in &r.actions {
                    print!("{}", action_lines(a));
                }
            }
            if !r.recovery.is_empty() {
                println!("\nrecovery:");
                for c in &r.recovery {
                    println!(
                        "  - {}: {} {} over {} samples, {}s apart",
                        c.title, c.path, c.trend, c.samples, c.interval_s
                    );
                }
            }
            for n in &r.notes {
                println!("\nnote: {n}");
            }
        }
        RunbookCmd::Run { id, json, labels } => {
            // Whatever stops the run before any check is "could not run" (2),
            // never "a check failed" (1).
            let e = match find(&id) {
                Ok(e) => e,
                Err(err) => {
                    eprintln!("firstline: {err}");
                    return Ok(ExitCode::from(2));
                }
            };
            let mut ctx = RunContext {
                now: firstline::domain::time::Clock::now(&firstline::domain::time::SystemClock),
                ..Default::default()
            };
            for l in labels {
                let Some((k, v)) = l.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
                    eprintln!(
                        "firstline: --label {l:?} is not NAME=VALUE (e.g. --label workflow_id=abc)"
                    );
                    return Ok(ExitCode::from(2));
                };
                ctx.labels.insert(k.to_string(), v.to_string());
            }
            let _ = rustls::crypto::ring::default_provider().install_default();
            let report = run::run(&e.runbook, &config.targets, &ctx, rb.concurrency).await;
            if json {
                let value = firstline::runbook::report_json::to_value(&report);
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                let messages = Messages::new(config.timezone);
                println!("{}", messages.findings(None, &report, &e.runbook.actions));
            }
            let outcome = RunOutcome::of(&report);
            // The report is stdout's; the verdict goes to stderr, so
            // `--json` stays one JSON document.
            eprintln!("firstline: {}", outcome.summary(&report));
            return Ok(outcome.code());
        }
        RunbookCmd::Lint { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// What `runbook run` exits with: 0 when no check failed and every one
/// could run (warnings included: they are reported, not failures), 1 when a
/// check failed (whatever else could not run), 2 when nothing failed but
/// some check could not run (its target is not configured, or its probe
/// could not observe), so the run proves nothing either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunOutcome {
    Ok,
    Warn,
    Failed,
    NotRun,
}

impl RunOutcome {
    fn of(report: &firstline::runbook::run::Report) -> RunOutcome {
        use firstline::runbook::run::Status;
        let has = |s: Status| report.findings.iter().any(|f| f.status == s);
        if has(Status::Fail) {
            RunOutcome::Failed
        } else if has(Status::Error) {
            RunOutcome::NotRun
        } else if has(Status::Warn) {
            RunOutcome::Warn
        } else {
            RunOutcome::Ok
        }
    }

    fn code(self) -> ExitCode {
        match self {
            RunOutcome::Ok | RunOutcome::Warn => ExitCode::SUCCESS,
            RunOutcome::Failed => ExitCode::from(1),
            RunOutcome::NotRun => ExitCode::from(2),
        }
    }

    fn summary(self, report: &firstline::runbook::run::Report) -> String {
        use firstline::runbook::run::Status;
        let count = |p: &dyn Fn(&firstline::runbook::run::Finding) -> bool| {
            report.findings.iter().filter(|f| p(f)).count()
        };
        let counts = [
            ("fail", count(&|f| f.status == Status::Fail)),
            (
                "not run (target not configured)",
                count(&|f| f.unconfigured),
            ),
            (
                "could not observe",
                count(&|f| f.status == Status::Error && !f.unconfigured),
            ),
            ("warn", count(&|f| f.status == Status::Warn)),
            ("ok", count(&|f| f.status == Status::Ok)),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(", ");
        let verdict = match self {
            RunOutcome::Ok => "exit 0: every check passed",
            RunOutcome::Warn => "exit 0: no check failed, but some warn",
            RunOutcome::Failed => "exit 1: a check failed",
            RunOutcome::NotRun => {
                "exit 2: no check failed, but some could not run, so this run is not conclusive"
            }
        };
        format!(
            "runbook {}: {} — {verdict}",
            report.runbook_id,
            if counts.is_empty() {
                "no checks".to_string()
            } else {
                counts
            }
        )
    }
}

/// Ctrl-C or SIGTERM. The handlers are installed here, at once: one
/// installed only when the future is first polled would leave a window
/// after the banner in which SIGTERM still kills the process outright.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let int = async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = int => {}
                _ = term => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// One action as `runbook show` prints it: what it is, whether it can be
/// undone, how it runs, who approves it and how often it is tried.
fn action_lines(a: &firstline::runbook::model::ActionDecl) -> String {
    use firstline::action::RunSpec;
    use firstline::action::nats_publish::NatsSource;
    let mut out = format!(
        "  - {} ({}, {}): {}\n",
        a.id,
        a.kind,
        if a.reversible {
            "reversible"
        } else {
            "not reversible"
        },
        a.title_en.as_deref().unwrap_or(&a.title)
    );
    if a.title_en.is_some() {
        out.push_str(&format!("      {}\n", a.title));
    }
    let runs = match &a.run {
        None => "manual checklist item (ticked by a person, recorded on the timeline)".to_string(),
        Some(RunSpec::Http(h)) => format!("http {} {} {}", h.method, h.target, h.path),
        Some(RunSpec::Command(c)) => format!("command {}", c.command),
        Some(RunSpec::NatsPublish(n)) => match &n.from {
            NatsSource::DlqStream { stream, .. } => format!(
                "nats_publish from DLQ stream {stream} via {} (max {})",
                n.target, n.max_messages
            ),
            NatsSource::ExecutionLogs { target, path, .. } => format!(
                "nats_publish from execution logs {target} {path} via {} (max {})",
                n.target, n.max_messages
            ),
        },
        Some(RunSpec::Sql(s)) => format!("sql on {} (max_rows {})", s.target, s.max_rows),
    };
    out.push_str(&format!("      runs:      {runs}\n"));
    if a.run.is_some() && !a.params.is_empty() {
        let params: Vec<String> = a
            .params
            .iter()
            .map(|(k, v)| match v {
                toml::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        out.push_str(&format!("      params:    {}\n", params.join(", ")));
    }
    let approvers = if a.approvers.is_empty() {
        "default approvers".to_string()
    } else {
        a.approvers.join(", ")
    };
    let quorum = a
        .quorum
        .map(|q| format!(", {q} approval(s) needed"))
        .unwrap_or_default();
    out.push_str(&format!("      approvers: {approvers}{quorum}\n"));
    let retry = match (a.run.as_ref(), a.retry.as_deref()) {
        (None, _) => None,
        (Some(_), None) => Some("one try".to_string()),
        (Some(_), Some("backoff")) => {
            Some("backoff: again after 30 s, 60 s, 120 s with the same idempotency key".to_string())
        }
        (Some(_), Some("restart")) => Some(format!(
            "restart: up to 3 tries, check {} after each",
            a.verify.as_deref().unwrap_or("?")
        )),
        (Some(_), Some(other)) => Some(other.to_string()),
    };
    if let Some(retry) = retry {
        out.push_str(&format!("      retry:     {retry}\n"));
    }
    out
}
