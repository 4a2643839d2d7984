//! Discord's messages as activities and their authors as members.

use serde_json::json;
use tributary::{Activity, Member};

use super::api::{Message, User, message_type};
use super::{Place, ThreadRef};

/// Profiles and avatars live on discord.com whatever the API's base URL.
const SITE: &str = "https://discord.com";
const CDN: &str = "https://cdn.discordapp.com";

/// Where the messages of a page were read.
pub(super) struct Context<'a> {
    pub guild: &'a str,
    /// The channel, or a thread's parent channel.
    pub place: &'a Place,
    pub thread: Option<&'a ThreadRef>,
}

pub(super) fn member(user: &User) -> Member {
    let avatar = user
        .avatar
        .as_ref()
        .map(|hash| format!("{CDN}/avatars/{}/{hash}.png", user.id));
    Member::new(user.id.to_string(), &user.username)
        .display_name(&user.global_name)
        .url(format!("{SITE}/users/{}", user.id))
        .attributes(json!({"avatar_url": avatar, "bot": user.bot.unwrap_or(false)}))
}

/// The activities of one message: none for system messages; a `thread_started` for a forum
/// post's first message (the thread's id) and, beside the message, for a message that started a
/// thread; else a `message` or a `reply`.
pub(super) fn of_message(message: &Message, at: &Context<'_>) -> Vec<Activity> {
    if !matches!(message.kind, message_type::DEFAULT | message_type::REPLY) {
        return Vec::new();
    }
    let container = at.thread.map_or(at.place.id, |t| t.id);
    let url = format!("{SITE}/channels/{}/{container}/{}", at.guild, message.id);
    let attributes = json!({
        "channel_id": at.place.id.to_string(),
        "thread_id": at.thread.map(|t| t.id.to_string()),
        "edited_at": message.edited_timestamp,
    });
    if let Some(thread) = at.thread
        && thread.id == message.id
    {
        return vec![
            started(thread.id, &thread.name, message, at, None)
                .url(url)
                .attributes(attributes),
        ];
    }
    let reply_to = message
        .message_reference
        .as_ref()
        .filter(|_| message.kind == message_type::REPLY)
        .and_then(|r| r.message_id);
    let (kind, parent) = match (reply_to, at.thread) {
        (Some(id), _) => ("reply", Some(format!("message:{id}"))),
        (None, Some(thread)) => ("message", Some(format!("thread:{}", thread.id))),
        (None, None) => ("message", None),
    };
    let mut activities = vec![
        Activity::new(
            format!("message:{}", message.id),
            kind,
            message.timestamp,
            member(&message.author),
        )
        .parent(parent)
        .channel(&at.place.name)
        .body(&message.content)
        .url(url)
        .attributes(attributes),
    ];
    if let Some(thread) = &message.thread {
        let name = thread.name.clone().unwrap_or_default();
        let parent = format!("message:{}", message.id);
        activities.push(
            started(thread.id, &name, message, at, Some(parent))
                .url(format!("{SITE}/channels/{}/{}", at.guild, thread.id)),
        );
    }
    activities
}

fn started(
    thread: u64,
    name: &str,
    message: &Message,
    at: &Context<'_>,
    parent: Option<String>,
) -> Activity {
    Activity::new(
        format!("thread:{thread}"),
        "thread_started",
        message.timestamp,
        member(&message.author),
    )
    .parent(parent)
    .channel(&at.place.name)
    .title(name)
    .body(&message.content)
    .attributes(json!({"channel_id": at.place.id.to_string(), "thread_id": thread.to_string()}))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::discord::api::{Channel, MessageReference};
    use chrono::{DateTime, Utc};

    fn user() -> User {
        User {
            id: 7,
            username: "nelly".into(),
            global_name: Some("Nelly".into()),
            avatar: Some("abc".into()),
            bot: None,
        }
    }

    fn message(id: u64, kind: u8) -> Message {
        Message {
            id,
            kind,
            channel_id: 1,
            author: user(),
            content: Some("hi".into()),
            timestamp: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap(),
            edited_timestamp: None,
            message_reference: None,
            thread: None,
        }
    }

    fn place() -> Place {
        Place {
            id: 1,
            name: "general".into(),
            forum: false,
        }
    }

    #[test]
    fn replies_name_their_parent_and_thread_messages_their_thread() {
        let place = place();
        let at = Context {
            guild: "9",
            place: &place,
            thread: None,
        };
        let mut reply = message(20, message_type::REPLY);
        reply.message_reference = Some(MessageReference {
            kind: Some(0),
            message_id: Some(10),
            channel_id: Some(1),
        });
        let got = of_message(&reply, &at);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].activity_type, "reply");
        assert_eq!(got[0].source_parent_id.as_deref(), Some("message:10"));
        assert_eq!(
            got[0].url.as_deref(),
            Some("https://discord.com/channels/9/1/20")
        );
        assert_eq!(got[0].member.display_name.as_deref(), Some("Nelly"));
        assert_eq!(
            got[0].member.attributes["avatar_url"],
            "https://cdn.discordapp.com/avatars/7/abc.png"
        );
        let thread = ThreadRef {
            id: 30,
            name: "Help".into(),
        };
        let in_thread = Context {
            thread: Some(&thread),
            ..at
        };
        let got = of_message(&message(31, 0), &in_thread);
        assert_eq!(got[0].source_parent_id.as_deref(), Some("thread:30"));
        assert_eq!(got[0].channel.as_deref(), Some("general"));
        let got = of_message(&message(30, 0), &in_thread);
        assert_eq!(
            got[0].source_id, "thread:30",
            "a forum post's first message"
        );
        assert_eq!(got[0].activity_type, "thread_started");
        assert!(of_message(&message(32, 7), &in_thread).is_empty(), "a join");
    }

    #[test]
    fn a_message_that_started_a_thread_is_its_parent() {
        let place = place();
        let at = Context {
            guild: "9",
            place: &place,
            thread: None,
        };
        let mut starter = message(40, 0);
        starter.thread = Some(Channel {
            id: 40,
            kind: 11,
            name: Some("Side talk".into()),
            parent_id: Some(1),
            last_message_id: None,
            owner_id: Some(7),
            thread_metadata: None,
            message_count: None,
        });
        let got = of_message(&starter, &at);
        let ids: Vec<_> = got.iter().map(|a| a.source_id.as_str()).collect();
        assert_eq!(ids, ["message:40", "thread:40"]);
        assert_eq!(got[1].source_parent_id.as_deref(), Some("message:40"));
        assert_eq!(got[1].title.as_deref(), Some("Side talk"));
    }
}
