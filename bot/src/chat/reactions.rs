//! A reaction on one of the bot's posts, from whichever platform it came
//! (Slack's events, Discord's gateway): found to be about an incident by
//! the post it was added to, then handed to the ledger as a
//! [`Change::Reaction`], where approvals are counted.
//!
//! Reactions on anything that is not the bot's post about an incident are
//! someone else's business and are left alone.

use crate::approval::Identity;
use crate::chat::handler::{self, CommandContext};
use crate::incident::{Change, LedgerError};
use crate::intake::journal::READ_WAIT;

/// The incident `message_ref` (a post of the bot's on `platform`) is
/// about, if it is one. `Err` when the store could not say (retry).
pub async fn incident_of_post(
    ctx: &CommandContext,
    platform: &str,
    message_ref: &str,
) -> Result<Option<i64>, String> {
    // A post written by an alert accepted a moment ago is found once the
    // journal has caught up with it.
    ctx.progress.caught_up(READ_WAIT).await;
    let post = ctx
        .store
        .post_by_ref(platform, message_ref)
        .await
        .map_err(|e| e.to_string())?;
    Ok(post.and_then(|p| p.incident_id))
}

/// A reaction `by` (named `actor` on the timeline) added to or `removed`
/// from `message_ref`, a post about incident `id`. `Err` (why) only when
/// a retry could change the outcome (the store failed); a reaction the
/// ledger refuses, or one with a malformed emoji or reference, is dropped.
pub async fn apply(
    ctx: &CommandContext,
    id: i64,
    actor: &str,
    by: Identity,
    emoji: &str,
    message_ref: &str,
    removed: bool,
) -> Result<(), String> {
    if handler::check_reaction(&by.user, emoji, message_ref).is_err() {
        return Ok(());
    }
    let change = Change::Reaction {
        id,
        emoji: emoji.to_string(),
        message_ref: message_ref.to_string(),
        removed,
        by: Some(by),
    };
    match ctx.ledger.change(actor, change).await {
        Ok(_) => Ok(()),
        Err(LedgerError::Store(e)) => Err(e.to_string()),
        // Refused (the incident is gone): nothing a retry would change.
        Err(_) => Ok(()),
    }
}
