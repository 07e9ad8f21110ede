//! `command`: an allowlisted program (`[actions.commands.NAME]`), run with
//! an argv, never through a shell.
//!
//! Only arguments that are one whole `{{ … }}` placeholder are rendered (the
//! configuration refuses any other placeholder), so a value can fill an
//! argument but never add one, and never change the program. The child gets
//! the configured environment on top of the bot's, its secret variables,
//! and `FIRSTLINE_IDEMPOTENCY_KEY`; no stdin; its own process group, killed
//! whole when the budget runs out.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Env, Outcome, Vars};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandAction {
    /// A key of `[actions.commands]` in the configuration.
    pub command: String,
}

/// The argv, rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandPlan {
    pub command: String,
    pub argv: Vec<String>,
    pub workdir: Option<String>,
    /// Names of the environment variables set (values of secret ones are
    /// never stored here).
    pub env: Vec<String>,
    /// The plain (not secret) variables with their values, as approved.
    #[serde(default)]
    pub plain_env: BTreeMap<String, String>,
}

/// The variable carrying the execution's idempotency key.
pub const IDEMPOTENCY_ENV: &str = "FIRSTLINE_IDEMPOTENCY_KEY";
/// Output kept per stream while the child runs (the rest is read and
/// dropped, so a chatty child never blocks on a full pipe).
const CAPTURE_CAP: usize = 64 * 1024;
/// How long the output is waited for once the child is gone: a grandchild
/// that kept the pipes open must not hold the execution.
const DRAIN: Duration = Duration::from_millis(300);

impl CommandPlan {
    /// ```text
    /// /usr/bin/systemctl restart notification-worker
    /// in /srv/ops
    /// env: A=1, TOKEN=••••
    /// ```
    pub fn describe(&self) -> String {
        let argv: Vec<String> = self.argv.iter().map(|a| shell_quote(a)).collect();
        let mut lines = vec![argv.join(" ")];
        if let Some(dir) = &self.workdir {
            lines.push(format!("in {}", shell_quote(dir)));
        }
        if !self.env.is_empty() {
            let vars: Vec<String> = self
                .env
                .iter()
                .map(|name| match self.plain_env.get(name) {
                    Some(value) => format!("{name}={}", shell_quote(value)),
                    None => format!("{name}=••••"),
                })
                .collect();
            lines.push(format!("env: {}", vars.join(", ")));
        }
        lines.join("\n")
    }
}

/// `arg` as a POSIX shell would need it written (for display only: nothing
/// here runs a shell).
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Whether `arg` is one whole `{{ … }}` placeholder.
fn whole_placeholder(arg: &str) -> bool {
    let a = arg.trim();
    a.starts_with("{{") && a.ends_with("}}") && a.matches("{{").count() == 1
}

pub fn prepare(spec: &CommandAction, vars: &Vars, env: &Env) -> Result<CommandPlan, String> {
    let config = env.commands.get(&spec.command).ok_or_else(|| {
        let known: Vec<&str> = env.commands.keys().map(String::as_str).collect();
        if known.is_empty() {
            format!(
                "unknown command {:?}: no [actions.commands] are configured",
                spec.command
            )
        } else {
            format!(
                "unknown command {:?}: configured are {}",
                spec.command,
                known.join(", ")
            )
        }
    })?;
    let name = &spec.command;
    if config.argv.first().is_none_or(|p| p.trim().is_empty()) {
        return Err(format!("command {name:?} names no program"));
    }
    let mut argv = Vec::with_capacity(config.argv.len());
    for (i, arg) in config.argv.iter().enumerate() {
        let templated = arg.contains("{{") || arg.contains("{%");
        if !templated {
            argv.push(arg.clone());
            continue;
        }
        // The configuration refuses these at load; checked again because
        // the whole-argument rule is what keeps a value from adding words.
        if i == 0 || !whole_placeholder(arg) {
            return Err(format!(
                "command {name:?}: argv[{i}] {arg:?}: a placeholder must be a whole argument, and never the program"
            ));
        }
        let value = super::render(arg.trim(), vars)?;
        if value.is_empty() {
            return Err(format!(
                "command {name:?}: argv[{i}] {} renders empty",
                arg.trim()
            ));
        }
        if value.contains('\0') {
            return Err(format!(
                "command {name:?}: argv[{i}] {} renders a NUL character",
                arg.trim()
            ));
        }
        argv.push(value);
    }
    let mut names: Vec<String> = config
        .env
        .keys()
        .chain(config.secret_env.keys())
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    Ok(CommandPlan {
        command: name.clone(),
        argv,
        workdir: config
            .workdir
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
        env: names,
        plain_env: config
            .env
            .iter()
            .filter(|(k, _)| !config.secret_env.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

pub async fn execute(plan: &CommandPlan, env: &Env, key: &str) -> Outcome {
    let refused = |summary: String| Outcome {
        ok: false,
        summary,
        output: String::new(),
        retryable: false,
    };
    let Some(config) = env.commands.get(&plan.command) else {
        return refused(format!(
            "command {:?} is no longer configured",
            plan.command
        ));
    };
    let Some((program, args)) = plan.argv.split_first() else {
        return refused(format!("command {:?} has no program", plan.command));
    };

    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(&plan.plain_env)
        .envs(
            config
                .secret_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.expose_secret())),
        )
        .env(IDEMPOTENCY_ENV, key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = &plan.workdir {
        cmd.current_dir(dir);
    }
    // Its own group, so a timeout ends what it started too.
    #[cfg(unix)]
    cmd.process_group(0);

    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        // Program missing, not executable, bad workdir: a person must fix it.
        Err(e) => return refused(format!("cannot start {}: {e}", shell_quote(program))),
    };
    let stdout = capture(child.stdout.take());
    let stderr = capture(child.stderr.take());

    let (summary, ok, retryable) = match tokio::time::timeout(env.timeout, child.wait()).await {
        Ok(Ok(status)) => {
            let ms = started.elapsed().as_millis();
            match status.code() {
                Some(0) => (format!("exit 0 in {ms} ms"), true, false),
                // A failing restart script may well work next time.
                Some(code) => (format!("exit {code} in {ms} ms"), false, true),
                None => (
                    format!("ended by {} in {ms} ms", signal_of(&status)),
                    false,
                    true,
                ),
            }
        }
        Ok(Err(e)) => (format!("lost track of the process: {e}"), false, false),
        Err(_) => {
            kill_group(&child);
            let _ = child.kill().await;
            (
                format!("timed out after {} s, killed", env.timeout.as_secs()),
                false,
                true,
            )
        }
    };
    let out = stdout.finish().await;
    let err = stderr.finish().await;
    let output = [out.trim(), err.trim()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    Outcome {
        ok,
        summary,
        output,
        retryable,
    }
}

#[cfg(unix)]
fn signal_of(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(s) => format!("signal {s}"),
        None => "a signal".into(),
    }
}

#[cfg(not(unix))]
fn signal_of(_status: &std::process::ExitStatus) -> String {
    "a signal".into()
}

/// Kills the child's process group (it leads one: `process_group(0)`).
#[cfg(target_os = "linux")]
fn kill_group(child: &tokio::process::Child) {
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

#[cfg(not(target_os = "linux"))]
fn kill_group(_child: &tokio::process::Child) {}

/// One output stream being read in the background, kept up to
/// [`CAPTURE_CAP`] bytes.
struct Capture {
    kept: Arc<Mutex<Vec<u8>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn capture<R: AsyncRead + Unpin + Send + 'static>(pipe: Option<R>) -> Capture {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let task = pipe.map(|mut pipe| {
        let kept = Arc::clone(&kept);
        tokio::spawn(async move {
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                        let room = CAPTURE_CAP.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                }
            }
        })
    });
    Capture { kept, task }
}

impl Capture {
    /// What was read, once the pipe closed or [`DRAIN`] passed.
    async fn finish(mut self) -> String {
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(DRAIN, &mut task).await.is_err()
        {
            task.abort();
        }
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&kept).into_owned()
    }
}
