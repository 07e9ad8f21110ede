//! The accept loop: what `axum::serve` does, plus the limits a server
//! facing real networks needs, so that slow or idle clients can never take
//! the server away from alert senders and `/healthz`:
//!
//! - **headers** must arrive within `server.header_timeout_ms`, and an idle
//!   keep-alive connection is closed after the same time (slowloris);
//! - **bodies** must arrive within `server.body_timeout_ms` once the headers
//!   have (a body that stalls is answered 400 naming the body);
//! - at most `server.max_connections` are served at once; one more gets an
//!   immediate `503` with `Retry-After` and is closed;
//! - when the process runs out of **file descriptors**, a descriptor kept in
//!   reserve is given up for a moment to accept the waiting connection and
//!   answer it `503`, instead of leaving clients hanging in the backlog.
//!
//! Shutdown is graceful: no new connections, requests in flight finish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// The server's limits (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

/// The body a connection beyond the limits is told (intake's answer shape).
const BUSY_BODY: &str = r#"{"status":"failed","reason_class":"infra","retry_advice":"retry_with_backoff","error":"too many connections; retry shortly"}"#;

/// Least time between two warnings about refused connections.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router.layer(RequestBodyTimeoutLayer::new(limits.body_timeout));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut reserve = reserve_fd();
    let mut refused = Refused::default();
    metrics::gauge!("firstline_http_connections").set(0.0);
    metrics::counter!("firstline_http_refused_connections_total").increment(0);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    on_accept_error(&listener, &mut reserve, &mut refused, e).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused.note("server.max_connections is reached");
            tokio::spawn(answer_busy(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        metrics::gauge!("firstline_http_connections").increment(1.0);
        tokio::spawn(async move {
            // A client that goes away or times out ends its connection;
            // nothing to report.
            let _ = conn.await;
            metrics::gauge!("firstline_http_connections").decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    // Requests in flight finish; connections idle in keep-alive close.
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("HTTP connections still open 10 s after shutdown began; closing them");
        }
    }
    Ok(())
}

/// A connection beyond the limits: told 503 at once, then closed.
async fn answer_busy(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BUSY_BODY}",
            BUSY_BODY.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// A descriptor held in reserve for [`on_accept_error`].
fn reserve_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// `accept` failed. Out of descriptors (EMFILE/ENFILE), the connection
/// stays in the listen backlog and `accept` fails again at once: give up
/// the reserve descriptor, accept it, answer 503, take the reserve back.
/// Anything else (a connection reset before it was accepted) is skipped.
async fn on_accept_error(
    listener: &TcpListener,
    reserve: &mut Option<std::fs::File>,
    refused: &mut Refused,
    e: std::io::Error,
) {
    let out_of_fds = matches!(e.raw_os_error(), Some(24) | Some(23));
    if !out_of_fds {
        tracing::debug!(error = %e, "accept failed; going on");
        return;
    }
    refused.note("the process is out of file descriptors (raise its ulimit -n)");
    if reserve.take().is_some() {
        if let Ok(Ok((stream, _))) =
            tokio::time::timeout(Duration::from_millis(10), listener.accept()).await
        {
            answer_busy(stream).await;
        }
        *reserve = reserve_fd();
    }
    // Let connections finish and free descriptors rather than spin.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Counts refused connections and warns at most every [`WARN_EVERY`].
#[derive(Default)]
struct Refused {
    since_warning: u64,
    warned_at: Option<Instant>,
}

impl Refused {
    fn note(&mut self, why: &str) {
        metrics::counter!("firstline_http_refused_connections_total").increment(1);
        self.since_warning += 1;
        if self.warned_at.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        tracing::warn!(
            refused = self.since_warning,
            why,
            "HTTP connections answered 503 and closed"
        );
        self.since_warning = 0;
        self.warned_at = Some(Instant::now());
    }
}
