//! Intake first: incident-making runs below it.
//!
//! In an alert storm, answering senders and making incidents want the
//! same cores. A sender must hear back quickly (Alertmanager waits, then
//! retries); incidents may lag by a second, because the intake journal
//! holds every accepted alert until it is applied. So the work of making
//! incidents runs on threads with a higher nice value than intake's: the
//! kernel runs intake first when both are ready, and incident-making takes
//! whatever is left, in fewer and larger commits, each cheaper per alert.
//! On an idle machine the nice value changes nothing.
//!
//! Linux keeps a nice value per thread, and a new thread inherits its
//! creator's. Elsewhere the priority is left as it is: there `setpriority`
//! would lower the whole process.

use std::future::Future;

/// How much higher incident-making's nice value is than intake's, the
/// main thread's (capped at 19, the lowest priority). Against a busy
/// thread at 0, a thread at 5 gets about a quarter of a core (kernel
/// weights 335 against 1024). At 10 (a tenth) intake was no faster under
/// wrk, but a chat command in a storm, which waits for incidents to catch
/// up, took up to 0.5–3 s against 0.3–0.4 s at 5 (and under 0.1 s before
/// any of this, with intake ~40 % slower).
pub const BACKGROUND_NICE: i32 = 5;

/// Runs `future` on a new thread named `name`, at [`BACKGROUND_NICE`], in
/// a single-threaded runtime of its own, until it ends or is aborted
/// through the returned handle. Threads that the future's work starts
/// (sqlx's SQLite worker, for one) inherit the priority.
pub fn spawn_background<F>(name: &str, future: F) -> std::io::Result<tokio::task::AbortHandle>
where
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let task = runtime.spawn(future);
    let abort = task.abort_handle();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            lower_this_threads_priority();
            // Ends with the task, aborted or not.
            let _ = runtime.block_on(task);
        })?;
    Ok(abort)
}

/// Runs `work` on a short-lived thread at [`BACKGROUND_NICE`] and returns
/// its result; for work that starts a long-lived thread (opening a SQLite
/// connection starts its worker) from a task that runs at intake's
/// priority.
pub async fn at_background_priority<F, T>(work: F) -> std::io::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("firstline-background-open".into())
        .spawn(move || {
            lower_this_threads_priority();
            let _ = tx.send(work());
        })?;
    rx.await
        .map_err(|_| std::io::Error::other("the background thread stopped before answering"))
}

#[cfg(target_os = "linux")]
fn lower_this_threads_priority() {
    use rustix::process::{getpid, getpriority_process, setpriority_process};
    // Relative to the main thread's (intake's), not to the calling
    // thread's: a thread started from one already in the background (the
    // writer opening its connection) lands at the same level, not lower.
    // With no pid (who = 0), Linux sets the calling thread's only.
    let lowered = getpriority_process(Some(getpid()))
        .and_then(|intake| setpriority_process(None, (intake + BACKGROUND_NICE).min(19)));
    if let Err(e) = lowered {
        tracing::warn!(
            error = %e,
            "could not lower incident-making's priority; it runs at intake's"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn this_threads_nice() -> i32 {
        rustix::process::getpriority_process(None).expect("getpriority")
    }

    #[tokio::test]
    async fn background_tasks_and_the_threads_they_start_run_below_intake() {
        let intake = this_threads_nice();
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn_background("firstline-test-bg", async move {
            let own = this_threads_nice();
            let started = std::thread::spawn(this_threads_nice)
                .join()
                .expect("thread");
            let _ = tx.send((own, started));
        })
        .expect("spawn");
        let (own, started) = rx.await.expect("the background task answers");
        assert_eq!(own, (intake + BACKGROUND_NICE).min(19));
        assert_eq!(started, own, "a thread it starts inherits its priority");
        assert_eq!(this_threads_nice(), intake, "the caller's is unchanged");
    }

    #[tokio::test]
    async fn work_run_at_background_priority_returns_its_result() {
        let intake = this_threads_nice();
        let nice = at_background_priority(this_threads_nice)
            .await
            .expect("thread");
        assert_eq!(nice, (intake + BACKGROUND_NICE).min(19));
        assert_eq!(this_threads_nice(), intake);
    }

    #[tokio::test]
    async fn work_started_from_the_background_runs_at_the_same_level_not_lower() {
        let intake = this_threads_nice();
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn_background("firstline-test-nest", async move {
            let nested = at_background_priority(this_threads_nice).await;
            let _ = tx.send(nested.expect("thread"));
        })
        .expect("spawn");
        let nested = rx.await.expect("the background task answers");
        assert_eq!(nested, (intake + BACKGROUND_NICE).min(19));
    }

    #[tokio::test]
    async fn an_aborted_background_task_ends_its_thread() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let abort = spawn_background("firstline-test-abort", async move {
            // Never resolves: only the abort ends it.
            let _keep = tx;
            std::future::pending::<()>().await;
        })
        .expect("spawn");
        abort.abort();
        // The sender is dropped when the aborted task is dropped.
        assert!(rx.await.is_err());
    }
}
