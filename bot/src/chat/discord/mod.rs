//! Discord, through serenity: the REST client and the application's
//! identity (its id and public key), shared by everything that talks to
//! Discord.
//!
//! HTTP interactions ([`interactions`]: slash commands and button presses
//! POSTed to `/discord/interactions`, verified with the application's
//! public key) and incident posts ([`post`]: a root message with an embed
//! and buttons, a thread started from it, the embed edited in place).
//! Slash commands are registered by `firstline discord register`
//! ([`register`]). Reactions arrive over the gateway ([`gateway`]).

pub mod emoji;
pub mod gateway;
pub mod interactions;
pub mod post;
pub mod register;

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serenity::http::{Http, HttpBuilder};
use serenity::interactions_endpoint::Verifier;
use serenity::model::id::ApplicationId;

use crate::config::{DISCORD_API_URL, DiscordConfig};

/// The application's public key from its hex form (64 digits, as the
/// Developer Portal shows it), checked to be an Ed25519 key; the error
/// says what is wrong without repeating the value.
pub fn public_key(hex_key: &str) -> Result<[u8; 32], String> {
    let hex_key = hex_key.trim();
    if hex_key.is_empty() {
        return Err("is required: the application's public key, 64 hex digits (Developer Portal → General Information → Public Key)".into());
    }
    let mut key = [0u8; 32];
    if hex_key.len() != 64 || hex::decode_to_slice(hex_key, &mut key).is_err() {
        return Err(format!(
            "is not 64 hex digits ({} characters given): copy the application's Public Key from Developer Portal → General Information",
            hex_key.chars().count()
        ));
    }
    match Verifier::try_new(key) {
        Ok(_) => Ok(key),
        Err(_) => Err("is not a valid Ed25519 public key: copy the application's Public Key from Developer Portal → General Information".into()),
    }
}

/// serenity's REST client for `config`: the bot token, the application id
/// (interaction webhooks are addressed by it), and `api_url`. Anywhere but
/// Discord itself (a proxy, the tests' fake) requests go to `api_url` with
/// serenity's rate limiter off, since serenity ignores the proxy while its
/// limiter is on; against Discord the limiter keeps to its buckets.
pub fn client(config: &DiscordConfig) -> Arc<Http> {
    Arc::new(builder(config).build())
}

/// [`client`]'s builder (the gateway's client takes one of its own).
pub fn builder(config: &DiscordConfig) -> HttpBuilder {
    let builder = HttpBuilder::new(config.bot_token.expose_secret())
        .application_id(ApplicationId::new(config.application_id));
    match proxy_of(&config.api_url) {
        Some(proxy) => builder.proxy(proxy).ratelimiter_disabled(true),
        None => builder,
    }
}

/// What serenity's `proxy` takes for `api_url`: serenity replaces
/// `https://discord.com` in its URLs (which continue `/api/v10/…`) with
/// it. `None` for Discord itself.
fn proxy_of(api_url: &str) -> Option<String> {
    let api_url = api_url.trim_end_matches('/');
    if api_url == DISCORD_API_URL {
        return None;
    }
    Some(
        api_url
            .strip_suffix("/api")
            .unwrap_or(api_url)
            .trim_end_matches('/')
            .to_string(),
    )
}

/// The configured Discord application: its REST client, the verifier of
/// what it sends, and the timings. Cheap to clone.
#[derive(Clone)]
pub struct Discord {
    http: Arc<Http>,
    verifier: Verifier,
    /// See [`DiscordConfig::max_age`].
    max_age: Duration,
    /// See [`DiscordConfig::answer_within`].
    answer_within: Duration,
    /// What posting keeps between calls: roots whose thread is not
    /// started yet, the per-channel pace (see [`post`]).
    posting: post::Posting,
}

impl Discord {
    /// Builds the client; the key was checked when the configuration was
    /// read, so this fails only for a hand-made config.
    pub fn new(config: &DiscordConfig) -> Result<Discord, String> {
        let verifier = Verifier::try_new(config.public_key)
            .map_err(|_| "chat.discord.public_key is not a valid Ed25519 public key".to_string())?;
        Ok(Discord {
            http: client(config),
            verifier,
            max_age: config.max_age,
            answer_within: config.answer_within,
            posting: post::Posting::default(),
        })
    }

    /// serenity's REST client, pointed at `api_url`.
    pub fn http(&self) -> &Arc<Http> {
        &self.http
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_key_must_be_64_hex_digits_of_a_valid_key() {
        // RFC 8032's first test key.
        let good = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        assert!(public_key(good).is_ok());
        assert!(public_key("").unwrap_err().starts_with("is required"));
        assert!(
            public_key("abc")
                .unwrap_err()
                .contains("3 characters given")
        );
        let not_hex = "z".repeat(64);
        assert!(
            public_key(&not_hex)
                .unwrap_err()
                .contains("not 64 hex digits")
        );
        // Not a point on the curve.
        let off_curve = "02".to_string() + &"00".repeat(30) + "80";
        assert!(
            public_key(&off_curve)
                .unwrap_err()
                .contains("not a valid Ed25519"),
            "{off_curve}"
        );
    }

    #[test]
    fn requests_go_to_discord_or_through_the_configured_api_url() {
        assert_eq!(proxy_of("https://discord.com/api"), None);
        assert_eq!(proxy_of("https://discord.com/api/"), None);
        assert_eq!(
            proxy_of("http://127.0.0.1:9000/api"),
            Some("http://127.0.0.1:9000".into())
        );
        assert_eq!(
            proxy_of("https://proxy.example"),
            Some("https://proxy.example".into())
        );
    }
}
