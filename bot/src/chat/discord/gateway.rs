//! Discord's gateway, through serenity's client: reactions on the bot's
//! posts, so approvals (and any reaction the ledger counts) work on Discord
//! as they do on Slack and the console; and interactions (slash commands,
//! buttons, autocomplete) when the application has no Interactions
//! Endpoint URL, so firstline works without a public address.
//!
//! - An interaction that arrives here is answered exactly as one POSTed to
//!   `/discord/interactions` is ([`Interactions::answer_read`]), the answer sent
//!   back as its interaction response (`POST /interactions/{id}/{token}/
//!   callback`). The gateway's connection is authenticated with the bot
//!   token, so no signature is needed.
//! - One shard, with only the `GUILD_MESSAGE_REACTIONS` intent (no message
//!   content, no members: nothing privileged to enable). The gateway's URL
//!   comes from `GET {api_url}/v10/gateway`, so a proxy or the tests' fake
//!   stands in for Discord the same way the REST API does.
//! - serenity keeps the connection: heartbeats, and on a drop a resume
//!   (Discord replays what was missed) or a new session. A refusal that
//!   will not go away (a wrong token, an intent not allowed) stops it and
//!   is logged with what to check.
//! - A reaction is acted on once: Discord may deliver one again (a resumed
//!   session replays), so each (message, user, emoji) remembers in the
//!   store whether its last add or remove was applied; the same one again
//!   changes nothing, while add → remove → add is three changes.
//! - Reactions by the bot itself, and on anything that is not its post
//!   about an incident, are ignored.
//!
//! serenity hands each event to its own task, so an add and a remove of
//! the same reaction within milliseconds may be applied in either order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serenity::all::{
    Context, EventHandler, GatewayIntents, Interaction, Reaction, Ready, ResumedEvent,
};
use serenity::async_trait;
use tokio::sync::watch;
use tracing::{info, warn};

use super::interactions::{self, Interactions};
use crate::approval::Identity;
use crate::chat::handler::CommandContext;
use crate::chat::reactions;
use crate::config::DiscordConfig;

/// The only intent asked for.
pub const INTENTS: GatewayIntents = GatewayIntents::GUILD_MESSAGE_REACTIONS;

/// The gateway connection, built and not yet connected.
pub struct Gateway {
    config: DiscordConfig,
    events: Arc<Events>,
}

impl Gateway {
    pub fn new(
        config: &DiscordConfig,
        commands: CommandContext,
        interactions: Interactions,
    ) -> Gateway {
        let http = interactions.discord().http().clone();
        Gateway {
            config: config.clone(),
            events: Arc::new(Events {
                commands,
                interactions,
                me: AtomicU64::new(0),
                names: Mutex::new(HashMap::new()),
                http,
            }),
        }
    }

    /// Connects and listens until `stop` turns true (or its sender is
    /// gone), then closes the connection.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let http = super::builder(&self.config).build();
        let built = serenity::client::ClientBuilder::new_with_http(http, INTENTS)
            .event_handler_arc(self.events.clone())
            .await;
        let mut client = match built {
            Ok(client) => client,
            Err(e) => {
                warn!(error = %e, "discord: the gateway client could not be built; reactions will not arrive");
                return;
            }
        };
        let shards = client.shard_manager.clone();
        let stopped = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        tokio::select! {
            ended = client.start() => match ended {
                Ok(()) => info!("discord: the gateway connection ended"),
                Err(e) => warn!(
                    error = %e,
                    "discord: the gateway refused the connection; reactions (approvals) will not arrive from Discord until firstline restarts. Check chat.discord.bot_token (Developer Portal → Bot → Reset Token) and that the bot is in the server"
                ),
            },
            () = stopped => {
                shards.shutdown_all().await;
                info!("discord: gateway connection closed");
            }
        }
    }
}

/// What the gateway's events are acted on with.
struct Events {
    commands: CommandContext,
    /// Where interactions are answered (as over HTTP).
    interactions: Interactions,
    /// The bot's own user id, from READY (0 until then).
    me: AtomicU64,
    /// Names seen for user ids (a removal does not carry the member).
    names: Mutex<HashMap<u64, String>>,
    /// The application's REST client (as posts use): names not seen yet,
    /// answers to interactions.
    http: Arc<serenity::http::Http>,
}

#[async_trait]
impl EventHandler for Events {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        self.me.store(ready.user.id.get(), Ordering::Relaxed);
        info!(bot = %ready.user.name, "discord: gateway connected; reactions on incident posts now count");
    }

    async fn resume(&self, _ctx: Context, _: ResumedEvent) {
        info!("discord: gateway session resumed");
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        let (id, token) = (interaction.id(), interaction.token().to_string());
        let answer = match self.interactions.answer_read(interaction).await {
            Ok(answer) => answer,
            Err(why) => interactions::unusable_answer(&why),
        };
        if let Err(e) = self
            .http
            .create_interaction_response(id, &token, &answer, Vec::new())
            .await
        {
            warn!(error = %e, "discord: an interaction from the gateway could not be answered");
        }
    }

    async fn reaction_add(&self, _ctx: Context, reaction: Reaction) {
        self.on_reaction(reaction, false).await;
    }

    async fn reaction_remove(&self, _ctx: Context, reaction: Reaction) {
        self.on_reaction(reaction, true).await;
    }
}

impl Events {
    async fn on_reaction(&self, reaction: Reaction, removed: bool) {
        let Some(user) = reaction.user_id else { return };
        if user.get() == self.me.load(Ordering::Relaxed) {
            return;
        }
        if let Some(member) = &reaction.member {
            if member.user.bot {
                return;
            }
            let name = interactions::actor(member.nick.as_deref(), &member.user);
            if let Ok(mut names) = self.names.lock() {
                names.insert(user.get(), name);
            }
        }
        let message_ref = format!("{}/{}", reaction.channel_id, reaction.message_id);
        let emoji = super::emoji::name_of(&reaction.emoji);
        if let Err(e) = self.apply(user.get(), &message_ref, &emoji, removed).await {
            warn!(error = %e, message = %message_ref, "discord: a reaction could not be recorded; it will count if made again");
        }
    }

    /// Acts on one reaction, once (see the module's notes).
    async fn apply(
        &self,
        user: u64,
        message_ref: &str,
        emoji: &str,
        removed: bool,
    ) -> Result<(), String> {
        let ctx = &self.commands;
        let Some(id) = reactions::incident_of_post(ctx, "discord", message_ref).await? else {
            return Ok(());
        };
        let key = |removed: bool| {
            format!(
                "reaction {message_ref} {user} {emoji} {}",
                if removed { "remove" } else { "add" }
            )
        };
        let now = ctx.clock.now();
        let store = &ctx.store;
        if !store
            .first_sight("discord", &key(removed), now)
            .await
            .map_err(|e| e.to_string())?
        {
            info!(message = %message_ref, "discord: a reaction delivered again was already applied");
            return Ok(());
        }
        let actor = self.name_of(user).await;
        let by = Identity::new("discord", &user.to_string());
        match reactions::apply(ctx, id, &actor, by, emoji, message_ref, removed).await {
            Ok(()) => {
                // The opposite change is new again.
                store
                    .forget_event("discord", &key(!removed))
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => {
                let _ = store.forget_event("discord", &key(removed)).await;
                Err(e)
            }
        }
    }

    /// How the timeline names `user`: as seen on an earlier reaction, else
    /// as Discord's REST API knows them, else by id.
    async fn name_of(&self, user: u64) -> String {
        if let Some(name) = self.names.lock().ok().and_then(|n| n.get(&user).cloned()) {
            return name;
        }
        match self.http.get_user(user.into()).await {
            Ok(u) => {
                let name = interactions::actor(None, &u);
                if let Ok(mut names) = self.names.lock() {
                    names.insert(user, name.clone());
                }
                name
            }
            Err(_) => format!("discord:{user}"),
        }
    }
}
