//! Emoji between Discord and the rest of firstline, which names them as
//! Slack does (`white_check_mark`): Discord sends a reaction's emoji as
//! the character (✅) and shows a `:shortcode:` in a bot's message as
//! typed (only its input box turns one into the emoji). The `emojis`
//! crate's GitHub shortcodes are the names Slack's standard emoji follow.

use std::borrow::Cow;

use serenity::model::channel::ReactionType;

/// A reaction's emoji by the name the approval rules use: a standard
/// emoji by its shortcode (✅ is `white_check_mark`, whatever its skin
/// tone), a server's own emoji by its name.
pub fn name_of(emoji: &ReactionType) -> String {
    match emoji {
        ReactionType::Unicode(text) => shortcode(text),
        ReactionType::Custom { name, id, .. } => {
            name.clone().unwrap_or_else(|| format!("emoji-{id}"))
        }
        other => other.to_string(),
    }
}

fn shortcode(text: &str) -> String {
    let Some(found) = emojis::get(text) else {
        return text.to_string();
    };
    let plain = found
        .with_skin_tone(emojis::SkinTone::Default)
        .unwrap_or(found);
    plain
        .shortcode()
        .or(found.shortcode())
        .map(str::to_string)
        .unwrap_or_else(|| text.to_string())
}

/// `text` as Discord should show it: each `:shortcode:` of a standard
/// emoji replaced by the emoji (`react :white_check_mark:` reads
/// `react ✅`); anything else, times like `18:37:42` included, unchanged.
pub fn shown(text: &str) -> Cow<'_, str> {
    if !text.contains(':') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(start) = rest.find(':') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-')))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        // `100` and `1234` are shortcodes too, but between colons digits
        // are a time (`18:100:` never is an emoji here).
        let found = (!name.is_empty()
            && !name.bytes().all(|b| b.is_ascii_digit())
            && after[name_len..].starts_with(':'))
        .then(|| emojis::get_by_shortcode(name))
        .flatten();
        match found {
            Some(emoji) => {
                out.push_str(emoji.as_str());
                rest = &after[name_len + 1..];
                changed = true;
            }
            None => {
                out.push(':');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_emoji_are_named_as_slack_names_them() {
        let named = |s: &str| name_of(&ReactionType::Unicode(s.into()));
        assert_eq!(named("✅"), "white_check_mark");
        assert_eq!(named("❌"), "x");
        assert_eq!(named("👍🏽"), "+1");
        assert_eq!(named("not an emoji"), "not an emoji");
        let custom = ReactionType::Custom {
            animated: false,
            id: 42.into(),
            name: Some("approve".into()),
        };
        assert_eq!(name_of(&custom), "approve");
    }

    #[test]
    fn shortcodes_are_shown_as_emoji_and_nothing_else_changes() {
        assert_eq!(
            shown("Approve: react :white_check_mark: here. Reject: :x:"),
            "Approve: react ✅ here. Reject: ❌"
        );
        assert_eq!(shown("ann reacted :eyes: to 1/2"), "ann reacted 👀 to 1/2");
        // Times, ports, URLs, unknown names and lone colons stay as they are.
        for same in [
            "detected 2026-12-05 18:37:42 UTC",
            "at 12:100:1234:",
            "POST http://127.0.0.1:18099/admin",
            "see :not_an_emoji_name: and a: b",
            "::",
            ":",
            "",
        ] {
            assert_eq!(shown(same), same);
            assert!(matches!(shown(same), Cow::Borrowed(_)), "{same}");
        }
        // Every emoji name round-trips through a reaction.
        let check = shown(":white_check_mark:").into_owned();
        assert_eq!(name_of(&ReactionType::Unicode(check)), "white_check_mark");
    }
}
