//! Slack's messages as activities and its users as members.

use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary::{Activity, Member};

use super::api::{Message, User, ts_time};

/// A channel as its streams need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Place {
    pub id: String,
    pub name: String,
}

/// The message an entry is about: the message itself, or the one an edit or a deletion changed.
fn shown(message: &Message) -> Option<&Message> {
    match message.subtype.as_deref() {
        Some("message_changed") => message.message.as_deref(),
        Some("message_deleted") => message.previous_message.as_deref(),
        _ => Some(message),
    }
}

/// Who a message is by: its user, else (a bot's message) its bot.
pub(super) fn author_id(message: &Message) -> Option<&str> {
    let shown = shown(message)?;
    shown.user.as_deref().or(shown.bot_id.as_deref())
}

/// The user a message is by, if a user (not a bot) wrote it: the one to look up.
pub(super) fn user_id(message: &Message) -> Option<&str> {
    shown(message)?.user.as_deref()
}

pub(super) fn member(id: &str, user: Option<&User>, site: Option<&str>) -> Member {
    let url = site.map(|s| format!("{s}/team/{id}"));
    let Some(user) = user else {
        return Member::new(id, id).url(url);
    };
    let profile = user.profile.as_ref();
    let display = profile
        .and_then(|p| p.display_name.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| user.real_name.clone())
        .or_else(|| profile.and_then(|p| p.real_name.clone()));
    let avatar = profile.and_then(|p| p.image_192.clone().or_else(|| p.image_72.clone()));
    Member::new(&user.id, &user.name)
        .display_name(display)
        .url(url)
        .attributes(json!({
            "avatar_url": avatar,
            "is_bot": user.is_bot.unwrap_or(false),
            "deleted": user.deleted.unwrap_or(false),
        }))
}

/// The activity of one message, or `None` for what is not one (topic changes, pins…).
/// `message_changed` and `message_deleted` give the activity of the message they change, under
/// its own key.
pub(super) fn of_message(
    message: &Message,
    place: &Place,
    site: Option<&str>,
    member_of: &dyn Fn(&str) -> Option<Member>,
) -> Option<Activity> {
    let (shown, deleted) = match message.subtype.as_deref() {
        None
        | Some("thread_broadcast" | "bot_message" | "file_share" | "me_message")
        | Some("channel_join") => (message, false),
        Some("message_changed") => (message.message.as_deref()?, false),
        Some("message_deleted") => (message.previous_message.as_deref()?, true),
        Some(_) => return None,
    };
    let at = ts_time(&shown.ts)?;
    let author = author_id(message)?;
    let mut member = member_of(author).unwrap_or_else(|| Member::new(author, author));
    if shown.user.is_none()
        && let Some(name) = &shown.username
    {
        member = member.display_name(name.as_str());
    }
    let reply_to = shown.thread_ts.as_deref().filter(|t| *t != shown.ts);
    let kind = match (shown.subtype.as_deref(), reply_to) {
        (Some("channel_join"), _) => "channel_joined",
        (_, Some(_)) => "thread_reply",
        _ => "message",
    };
    let url = site.map(|s| format!("{s}/archives/{}/p{}", place.id, shown.ts.replace('.', "")));
    Some(
        Activity::new(
            format!("message:{}:{}", place.id, shown.ts),
            kind,
            at,
            member,
        )
        .parent(reply_to.map(|t| format!("message:{}:{t}", place.id)))
        .channel(&place.name)
        .body(if deleted { None } else { shown.text.clone() })
        .url(url)
        .attributes(json!({
            "channel_id": place.id,
            "ts": shown.ts,
            "edited_at": shown.edited.as_ref().and_then(|e| ts_time(&e.ts)),
            "deleted": deleted,
            "reply_count": shown.reply_count,
        })),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::slack::api::Edited;

    fn message(ts: &str, text: &str) -> Message {
        Message {
            ts: ts.into(),
            subtype: None,
            user: Some("U1".into()),
            bot_id: None,
            username: None,
            text: Some(text.into()),
            thread_ts: None,
            reply_count: None,
            latest_reply: None,
            edited: None,
            message: None,
            previous_message: None,
            deleted_ts: None,
        }
    }

    fn place() -> Place {
        Place {
            id: "C1".into(),
            name: "general".into(),
        }
    }

    fn of(m: &Message) -> Option<Activity> {
        of_message(m, &place(), Some("https://acme.slack.com"), &|_| None)
    }

    #[test]
    fn edits_and_deletions_rewrite_the_message_they_change() {
        let mut new = message("100.000001", "fixed");
        new.edited = Some(Edited {
            user: Some("U1".into()),
            ts: "200.000000".into(),
        });
        let mut changed = message("200.000002", "");
        changed.subtype = Some("message_changed".into());
        changed.message = Some(Box::new(new));
        changed.previous_message = Some(Box::new(message("100.000001", "fixd")));
        let activity = of(&changed).unwrap();
        assert_eq!(activity.source_id, "message:C1:100.000001");
        assert_eq!(activity.body.as_deref(), Some("fixed"));
        assert_eq!(activity.attributes["deleted"], false);
        assert_eq!(
            activity.url.as_deref(),
            Some("https://acme.slack.com/archives/C1/p100000001")
        );

        let mut deleted = message("300.000000", "");
        deleted.subtype = Some("message_deleted".into());
        deleted.user = None;
        deleted.deleted_ts = Some("100.000001".into());
        deleted.previous_message = Some(Box::new(message("100.000001", "fixed")));
        let activity = of(&deleted).unwrap();
        assert_eq!(activity.source_id, "message:C1:100.000001");
        assert_eq!(activity.body, None);
        assert_eq!(activity.attributes["deleted"], true);
        assert_eq!(activity.member.source_id, "U1");
    }

    #[test]
    fn replies_joins_bots_and_system_messages() {
        let mut reply = message("101.000000", "me too");
        reply.thread_ts = Some("100.000000".into());
        let activity = of(&reply).unwrap();
        assert_eq!(activity.activity_type, "thread_reply");
        assert_eq!(
            activity.source_parent_id.as_deref(),
            Some("message:C1:100.000000")
        );
        let mut join = message("102.000000", "<@U1> has joined the channel");
        join.subtype = Some("channel_join".into());
        assert_eq!(of(&join).unwrap().activity_type, "channel_joined");
        let mut topic = message("103.000000", "set the topic");
        topic.subtype = Some("channel_topic".into());
        assert!(of(&topic).is_none());
        let mut bot = message("104.000000", "deploy done");
        bot.subtype = Some("bot_message".into());
        bot.user = None;
        bot.bot_id = Some("B9".into());
        bot.username = Some("deploybot".into());
        let activity = of(&bot).unwrap();
        assert_eq!(activity.member.source_id, "B9");
        assert_eq!(activity.member.display_name.as_deref(), Some("deploybot"));
        let mut anonymous = message("105.000000", "?");
        anonymous.user = None;
        assert!(of(&anonymous).is_none(), "no author: no activity");
    }
}
