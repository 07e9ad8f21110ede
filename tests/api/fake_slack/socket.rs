//! Slack's Socket Mode, faked, as Slack documents it
//! (api.slack.com/apis/socket-mode):
//!
//! - `apps.connections.open`, called with the app-level token (`xapp-…`),
//!   answers a one-time `ws://127.0.0.1:PORT/link/?ticket=…&app_id=…` URL
//!   (Slack's is `wss://wss-primary.slack.com/link/?ticket=…`); a ticket
//!   opens one connection.
//! - On connecting, the server sends `hello`; then whatever envelopes the
//!   test asks for (`events_api`, `slash_commands`, `interactive`), each with
//!   an `envelope_id` and `accepts_response_payload`; an `events_api` one
//!   also with `retry_attempt` and `retry_reason`.
//! - The app acknowledges an envelope with `{"envelope_id": …}` plus, where
//!   accepted, a `payload` (a slash command's answer); every text frame the
//!   app sends is recorded.
//! - `disconnect` (reason `refresh_requested`) warns that Slack is about to
//!   close a connection; the app is expected to open a new one.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use super::{FAKE_APP_ID, FakeSlack, FakeState, Shared, form_decode, lock, obj};

/// The host Slack's frames name in their `debug_info`.
const DEBUG_HOST: &str = "applink-fake-0";

/// What the fake's Socket Mode side knows.
#[derive(Debug, Default)]
pub(super) struct SocketState {
    /// The WebSocket server's address.
    pub(super) addr: Option<SocketAddr>,
    /// Tickets handed out by `apps.connections.open` and not used yet.
    tickets: HashSet<String>,
    issued: u64,
    connections: Vec<Connection>,
    acks: Vec<Ack>,
}

#[derive(Debug)]
struct Connection {
    tx: UnboundedSender<Out>,
    open: bool,
}

#[derive(Debug)]
enum Out {
    Text(String),
    Close,
}

/// A frame the app sent back, as received.
#[derive(Debug, Clone)]
pub(crate) struct Ack {
    /// Which connection (0 for the first one opened).
    pub connection: usize,
    pub body: Value,
    pub at: Instant,
}

impl SocketState {
    /// `apps.connections.open`'s answer: a fresh one-time URL.
    pub(super) fn open_url(&mut self) -> Map<String, Value> {
        self.issued += 1;
        let ticket = format!("fake-ticket-{}", self.issued);
        self.tickets.insert(ticket.clone());
        let addr = self
            .addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "127.0.0.1:9".into());
        obj(json!({
            "url": format!("ws://{addr}/link/?ticket={ticket}&app_id={FAKE_APP_ID}"),
        }))
    }
}

impl FakeState {
    /// Connections opened so far (open or closed since).
    pub(crate) fn connections_opened(&self) -> usize {
        self.socket.connections.len()
    }

    /// Connections open now.
    pub(crate) fn open_connections(&self) -> usize {
        self.socket.connections.iter().filter(|c| c.open).count()
    }

    /// What the app sent back for `envelope_id`, in order.
    pub(crate) fn acks_for(&self, envelope_id: &str) -> Vec<Ack> {
        self.socket
            .acks
            .iter()
            .filter(|a| a.body["envelope_id"] == envelope_id)
            .cloned()
            .collect()
    }
}

/// Starts the WebSocket server on a loopback port; its address goes into
/// the URLs `apps.connections.open` hands out.
pub(super) async fn serve(shared: Shared) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fake Socket Mode server to a loopback port");
    lock(&shared).socket.addr = listener.local_addr().ok();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(connection(shared.clone(), stream));
        }
    })
}

/// One connection: the ticket is checked at the handshake, then `hello`,
/// then envelopes out and acknowledgements in until either side closes.
async fn connection(shared: Shared, stream: tokio::net::TcpStream) {
    // The callback's shape (and its large error) is tungstenite's.
    #[allow(clippy::result_large_err)]
    let check = {
        let shared = shared.clone();
        move |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
            let ticket = form_decode(request.uri().query().unwrap_or(""))
                .into_iter()
                .find(|(k, _)| k == "ticket")
                .map(|(_, v)| v)
                .unwrap_or_default();
            if request.uri().path() == "/link/" && lock(&shared).socket.tickets.remove(&ticket) {
                Ok(response)
            } else {
                let mut refused = ErrorResponse::new(Some("invalid or used ticket".into()));
                *refused.status_mut() =
                    tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
                Err(refused)
            }
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
        return;
    };
    let (tx, mut rx) = unbounded_channel();
    let (id, connections) = {
        let mut st = lock(&shared);
        st.socket.connections.push(Connection { tx, open: true });
        (st.socket.connections.len() - 1, st.open_connections())
    };
    let (mut write, mut read) = ws.split();
    let hello = json!({
        "type": "hello",
        "num_connections": connections,
        "debug_info": {"host": DEBUG_HOST, "build_number": 1, "approximate_connection_time": 18060},
        "connection_info": {"app_id": FAKE_APP_ID},
    });
    if write
        .send(Frame::Text(hello.to_string().into()))
        .await
        .is_ok()
    {
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(Out::Text(text)) => {
                        if write.send(Frame::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    Some(Out::Close) | None => {
                        let _ = write.send(Frame::Close(None)).await;
                        break;
                    }
                },
                frame = read.next() => match frame {
                    Some(Ok(Frame::Text(text))) => {
                        let body = serde_json::from_str(text.as_str())
                            .unwrap_or_else(|_| Value::String(text.to_string()));
                        lock(&shared).socket.acks.push(Ack { connection: id, body, at: Instant::now() });
                    }
                    Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    if let Some(c) = lock(&shared).socket.connections.get_mut(id) {
        c.open = false;
    }
}

impl FakeSlack {
    /// The app-level token `apps.connections.open` takes (`Authorization:
    /// Bearer …`); the bot token there is `not_allowed_token_type`, as is the
    /// app token anywhere else.
    pub(crate) fn accept_app_token(&self, token: &str) {
        self.state().app_token = Some(token.to_string());
    }

    /// Connections opened so far.
    pub(crate) fn connections_opened(&self) -> usize {
        self.state().connections_opened()
    }

    /// Waits until `n` connections have been opened and one is open.
    pub(crate) async fn wait_connections(&self, n: usize, timeout: Duration) -> bool {
        self.wait_for(
            |st| st.connections_opened() >= n && st.open_connections() > 0,
            timeout,
        )
        .await
    }

    /// Sends `envelope` over the newest open connection; panics if none is.
    pub(crate) fn send_envelope(&self, envelope: &Value) {
        let st = self.state();
        let c = st
            .socket
            .connections
            .iter()
            .rev()
            .find(|c| c.open)
            .expect("no Socket Mode connection is open");
        let _ = c.tx.send(Out::Text(envelope.to_string()));
    }

    /// Sends `envelope` and waits for its acknowledgement.
    pub(crate) async fn round_trip(&self, envelope: &Value, timeout: Duration) -> Option<Ack> {
        self.send_envelope(envelope);
        self.wait_ack(envelope["envelope_id"].as_str().unwrap_or(""), timeout)
            .await
    }

    /// The first acknowledgement of `envelope_id`, waiting up to `timeout`.
    pub(crate) async fn wait_ack(&self, envelope_id: &str, timeout: Duration) -> Option<Ack> {
        self.wait_for(|st| !st.acks_for(envelope_id).is_empty(), timeout)
            .await;
        self.state().acks_for(envelope_id).first().cloned()
    }

    /// Every acknowledgement of `envelope_id` so far.
    pub(crate) fn acks_for(&self, envelope_id: &str) -> Vec<Ack> {
        self.state().acks_for(envelope_id)
    }

    /// Sends `disconnect` (reason `refresh_requested`) on every open
    /// connection, as Slack does before it closes them.
    pub(crate) fn disconnect_all(&self) {
        let frame = json!({
            "type": "disconnect",
            "reason": "refresh_requested",
            "debug_info": {"host": DEBUG_HOST},
        })
        .to_string();
        for c in self.state().socket.connections.iter().filter(|c| c.open) {
            let _ = c.tx.send(Out::Text(frame.clone()));
        }
    }

    /// Closes every open connection (a close frame, no warning).
    pub(crate) fn close_all(&self) {
        for c in self.state().socket.connections.iter().filter(|c| c.open) {
            let _ = c.tx.send(Out::Close);
        }
    }
}

static ENVELOPES: AtomicU64 = AtomicU64::new(1);

/// A new envelope of `kind` (`events_api`, `slash_commands`, `interactive`)
/// carrying `payload`, with a fresh `envelope_id` (Slack's are UUIDs).
pub(crate) fn envelope(kind: &str, payload: Value) -> Value {
    let n = ENVELOPES.fetch_add(1, Ordering::Relaxed);
    let mut e = json!({
        "envelope_id": format!("{n:08x}-fa4e-4e4e-8e4e-{n:012x}"),
        "type": kind,
        "payload": payload,
        // Slack takes a payload in the acknowledgement of a slash command
        // (its answer), not of an event or a button press.
        "accepts_response_payload": kind == "slash_commands",
    });
    if kind == "events_api" {
        e["retry_attempt"] = json!(0);
        e["retry_reason"] = json!("");
    }
    e
}

/// Slack sending an `events_api` envelope again, unacknowledged the first
/// time: a new `envelope_id`, the same payload, `retry_attempt` counted up.
pub(crate) fn redelivery(first: &Value, attempt: u32) -> Value {
    let mut again = envelope("events_api", first["payload"].clone());
    again["retry_attempt"] = json!(attempt);
    again["retry_reason"] = json!("timeout");
    again
}

/// A `slash_commands` envelope's payload: the fields of a slash command's
/// HTTP form ([`command_form`]), as JSON strings.
pub(crate) fn command_payload(form: &str) -> Value {
    Value::Object(
        form_decode(form)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}
