//! The console platform: posts are printed to standard output and kept in the
//! store (readable at `GET /console/posts`), and commands and reactions come
//! from the terminal or `POST /console/commands` / `POST /console/reactions`.
//! It lets the whole flow be tried with no chat account.

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::{ChatError, ChatPlatform, PostRequest, Posted};
use crate::domain::time::Clock;
use crate::store::{ChatPost, Store};

/// Where console output goes: standard output, or nowhere (tests read the
/// posts back from the store instead).
#[derive(Clone)]
pub enum Sink {
    Stdout,
    Silent,
}

/// The console platform.
#[derive(Clone)]
pub struct Console {
    store: Store,
    clock: Arc<dyn Clock>,
    sink: Sink,
    out: Arc<Mutex<()>>,
}

impl Console {
    pub fn new(store: Store, clock: Arc<dyn Clock>, sink: Sink) -> Console {
        Console {
            store,
            clock,
            sink,
            out: Arc::new(Mutex::new(())),
        }
    }

    fn print(&self, header: &str, text: &str) {
        if let Sink::Stdout = self.sink {
            let _guard = self.out.lock();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "\n── {header} {}",
                "─".repeat(60usize.saturating_sub(header.chars().count()))
            );
            for line in text.lines() {
                let _ = writeln!(out, "│ {line}");
            }
            let _ = out.flush();
        }
    }

    fn err(message: String) -> ChatError {
        ChatError {
            platform: "console",
            message,
            retry_after: None,
            retryable: true,
        }
    }
}

impl ChatPlatform for Console {
    fn name(&self) -> &'static str {
        "console"
    }

    async fn post(&self, req: &PostRequest) -> Result<Posted, ChatError> {
        let message_ref = format!("console-{}", req.outbox_id);
        let thread = req.thread.clone().unwrap_or_else(|| message_ref.clone());
        let post = ChatPost {
            id: 0,
            outbox_id: Some(req.outbox_id),
            platform: "console".into(),
            channel: req.channel.clone(),
            thread: req.thread.clone(),
            message_ref: message_ref.clone(),
            incident_id: req.incident_id,
            text: req.text.clone(),
            posted_ms: self.clock.now().0,
        };
        // Recording first makes the post exactly-once: a redelivery after a
        // crash finds the row and prints nothing.
        let new = self
            .store
            .record_post(&post)
            .await
            .map_err(|e| Self::err(e.to_string()))?;
        if new {
            let place = match &req.thread {
                Some(t) => format!("{} › thread {t}", req.channel),
                None => req.channel.clone(),
            };
            self.print(&format!("{place} [{message_ref}]"), &req.text);
        }
        Ok(Posted {
            message_ref,
            thread,
        })
    }

    async fn update(&self, message_ref: &str, text: &str) -> Result<(), ChatError> {
        self.print(&format!("(edited {message_ref})"), text);
        Ok(())
    }

    async fn direct_message(&self, user: &str, text: &str) -> Result<(), ChatError> {
        self.print(&format!("DM to {user}"), text);
        Ok(())
    }
}
