//! Discord's gateway, faked on loopback as Discord documents it
//! (discord.com/developers/docs/topics/gateway), so serenity's real client
//! connects to it: `GET /api/v10/gateway` on the fake REST API names this
//! server's `ws://` URL.
//!
//! - On connecting, the server sends HELLO (op 10, `heartbeat_interval`).
//! - IDENTIFY (op 2) is answered with the READY dispatch (op 0, `t`
//!   READY: the bot user, the session id, the shard); RESUME (op 6) with
//!   the RESUMED dispatch. Heartbeats (op 1) get HEARTBEAT_ACK (op 11).
//! - The test dispatches `MESSAGE_REACTION_ADD` / `MESSAGE_REACTION_REMOVE`
//!   with the documented fields, and `INTERACTION_CREATE`, each with the next sequence number `s`;
//!   it can deliver one again with its original `s` (as a replay after a
//!   resume may), and ask the client to reconnect (RECONNECT, op 7).
//! - It can refuse an IDENTIFY by closing with a code (4004 for a wrong
//!   token).
//! - Every frame the client sends is recorded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::fake_discord::{APPLICATION_ID, GUILD_ID, member};

/// The bot's own user id, as READY names it.
pub const BOT_USER_ID: &str = "523456789012345678";

/// Opcodes (Discord's gateway opcodes table).
const DISPATCH: u64 = 0;
const HEARTBEAT: u64 = 1;
const IDENTIFY: u64 = 2;
const RESUME: u64 = 6;
const RECONNECT: u64 = 7;
const INVALID_SESSION: u64 = 9;
const HELLO: u64 = 10;
const HEARTBEAT_ACK: u64 = 11;

#[derive(Default)]
struct State {
    /// Senders to each connection's socket, in the order they opened;
    /// `None` once closed.
    connections: Vec<Option<UnboundedSender<Frame>>>,
    /// Frames the client sent (IDENTIFY, RESUME, heartbeats…), in order.
    received: Vec<Value>,
    /// The last sequence number dispatched.
    seq: u64,
    /// Every dispatch sent, by sequence number.
    dispatched: Vec<(u64, Value)>,
    /// Close an IDENTIFY's connection with this code instead of READY.
    refuse_identify: Option<u16>,
}

/// The fake gateway. Cheap to clone.
#[derive(Clone)]
pub struct FakeGateway {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeGateway {
    pub async fn start() -> FakeGateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake gateway");
        let addr = listener.local_addr().expect("its address");
        let gateway = FakeGateway {
            addr,
            state: Arc::new(Mutex::new(State::default())),
        };
        let serving = gateway.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let g = serving.clone();
                tokio::spawn(async move { g.serve(stream).await });
            }
        });
        gateway
    }

    /// What `GET /gateway` answers.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }

    async fn serve(&self, stream: tokio::net::TcpStream) {
        let Ok(socket) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        let (mut sink, mut source) = socket.split();
        let (tx, mut rx) = unbounded_channel::<Frame>();
        let index = self.with(|s| {
            s.connections.push(Some(tx.clone()));
            s.connections.len() - 1
        });
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                let close = matches!(frame, Frame::Close(_));
                if sink.send(frame).await.is_err() || close {
                    break;
                }
            }
        });
        let hello = json!({"op": HELLO, "d": {"heartbeat_interval": 41250}, "s": null, "t": null});
        let _ = tx.send(text(&hello));
        while let Some(Ok(frame)) = source.next().await {
            let Frame::Text(body) = frame else {
                if matches!(frame, Frame::Close(_)) {
                    break;
                }
                continue;
            };
            let Ok(value) = serde_json::from_str::<Value>(body.as_str()) else {
                continue;
            };
            self.with(|s| s.received.push(value.clone()));
            match value["op"].as_u64() {
                Some(IDENTIFY) => {
                    if let Some(code) = self.with(|s| s.refuse_identify) {
                        let _ = tx.send(Frame::Close(Some(CloseFrame {
                            code: CloseCode::from(code),
                            reason: "Authentication failed.".into(),
                        })));
                        continue;
                    }
                    let ready = self.ready();
                    let _ = tx.send(text(&self.dispatch_frame("READY", ready)));
                }
                Some(RESUME) => {
                    let _ = tx.send(text(&self.dispatch_frame("RESUMED", json!({}))));
                }
                Some(HEARTBEAT) => {
                    let _ = tx.send(text(&json!({"op": HEARTBEAT_ACK})));
                }
                _ => {}
            }
        }
        self.with(|s| s.connections[index] = None);
    }

    fn ready(&self) -> Value {
        json!({
            "v": 10,
            "user": {"id": BOT_USER_ID, "username": "firstline", "global_name": null,
                     "discriminator": "0", "avatar": null, "bot": true,
                     "verified": true, "mfa_enabled": false, "flags": 0},
            "guilds": [{"id": GUILD_ID, "unavailable": true}],
            "session_id": "fake-session-1",
            "resume_gateway_url": self.url(),
            "shard": [0, 1],
            "application": {"id": APPLICATION_ID, "flags": 0},
        })
    }

    /// A DISPATCH frame with the next sequence number, remembered.
    fn dispatch_frame(&self, event: &str, data: Value) -> Value {
        self.with(|s| {
            s.seq += 1;
            let frame = json!({"op": DISPATCH, "s": s.seq, "t": event, "d": data});
            s.dispatched.push((s.seq, frame.clone()));
            frame
        })
    }

    /// Sends `frame` on the newest open connection; whether there was one.
    fn send(&self, frame: Frame) -> bool {
        self.with(|s| {
            s.connections
                .iter()
                .rev()
                .flatten()
                .next()
                .is_some_and(|tx| tx.send(frame).is_ok())
        })
    }

    /// From now on an IDENTIFY is answered by closing the connection with
    /// `code` (4004: Authentication failed, as for a wrong token).
    pub fn refuse_identify(&self, code: u16) {
        self.with(|s| s.refuse_identify = Some(code));
    }

    /// The IDENTIFY payloads received, in order.
    pub fn identifies(&self) -> Vec<Value> {
        self.frames(IDENTIFY)
    }

    /// The RESUME payloads received, in order.
    pub fn resumes(&self) -> Vec<Value> {
        self.frames(RESUME)
    }

    fn frames(&self, op: u64) -> Vec<Value> {
        self.with(|s| {
            s.received
                .iter()
                .filter(|f| f["op"].as_u64() == Some(op))
                .map(|f| f["d"].clone())
                .collect()
        })
    }

    /// Waits until `done` holds; whether it did within `wait`.
    pub async fn wait_for(&self, done: impl Fn(&FakeGateway) -> bool, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            if done(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        done(self)
    }

    /// Waits until a client has identified (or resumed) and been answered.
    pub async fn wait_connected(&self, wait: Duration) -> bool {
        self.wait_for(|g| !g.identifies().is_empty(), wait).await
    }

    /// `user` (with `username`) adds (or, `removed`, takes off) `emoji`
    /// (the character, or a server emoji's name with `emoji_id`) on
    /// `channel`/`message`: the dispatch's sequence number, or `None` when
    /// no client is connected.
    pub fn react(
        &self,
        removed: bool,
        channel: &str,
        message: &str,
        user: &str,
        username: &str,
        emoji: &str,
    ) -> Option<u64> {
        let mut data = json!({
            "user_id": user,
            "channel_id": channel,
            "message_id": message,
            "guild_id": GUILD_ID,
            "emoji": {"id": null, "name": emoji},
            "burst": false,
            "type": 0,
        });
        let event = if removed {
            "MESSAGE_REACTION_REMOVE"
        } else {
            // Only an add carries the member, the message's author and the
            // burst colours.
            data["member"] = member(user, username, None, None);
            data["message_author_id"] = json!(BOT_USER_ID);
            data["burst_colors"] = json!([]);
            "MESSAGE_REACTION_ADD"
        };
        let frame = self.dispatch_frame(event, data);
        let seq = frame["s"].as_u64();
        self.send(text(&frame)).then_some(seq).flatten()
    }

    /// Dispatches INTERACTION_CREATE with `interaction` (as built for the
    /// HTTP endpoint: Discord sends the same object either way); whether a
    /// client was connected.
    pub fn interaction(&self, interaction: &Value) -> bool {
        let frame = self.dispatch_frame("INTERACTION_CREATE", interaction.clone());
        self.send(text(&frame))
    }

    /// Sends the dispatch numbered `seq` again, unchanged (Discord may
    /// deliver an event again, e.g. replayed after a resume).
    pub fn deliver_again(&self, seq: u64) -> bool {
        let frame = self.with(|s| {
            s.dispatched
                .iter()
                .find(|(n, _)| *n == seq)
                .map(|(_, f)| f.clone())
        });
        frame.is_some_and(|f| self.send(text(&f)))
    }

    /// Tells the client its session is gone and cannot be resumed
    /// (INVALID_SESSION, op 9, `d` false): it identifies again.
    pub fn invalidate_session(&self) -> bool {
        self.send(text(
            &json!({"op": INVALID_SESSION, "d": false, "s": null, "t": null}),
        ))
    }

    /// Asks the client to reconnect (RECONNECT, op 7), as Discord does
    /// before moving a session; serenity then connects again and resumes.
    pub fn ask_reconnect(&self) -> bool {
        self.send(text(
            &json!({"op": RECONNECT, "d": null, "s": null, "t": null}),
        ))
    }
}

fn text(value: &Value) -> Frame {
    Frame::text(value.to_string())
}
