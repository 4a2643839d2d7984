//! Discord's wire format (API v10): what its answers hold, the optional and nullable fields
//! optional. Ids are snowflakes, sent as strings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds: snowflakes count from it.
pub const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;

/// The smallest snowflake of a message sent at or after `at`.
pub fn snowflake_at(at: DateTime<Utc>) -> u64 {
    let ms = (at.timestamp_millis() - DISCORD_EPOCH_MS).max(0);
    (ms as u64) << 22
}

/// When the object with snowflake `id` was created.
pub fn snowflake_time(id: u64) -> DateTime<Utc> {
    let ms = (id >> 22) as i64 + DISCORD_EPOCH_MS;
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Channel types read: text, announcement, forum and media channels; public and announcement
/// threads.
pub mod channel_type {
    pub const TEXT: u8 = 0;
    pub const ANNOUNCEMENT: u8 = 5;
    pub const ANNOUNCEMENT_THREAD: u8 = 10;
    pub const PUBLIC_THREAD: u8 = 11;
    pub const FORUM: u8 = 15;
    pub const MEDIA: u8 = 16;
}

/// Message types read: ordinary messages and replies (joins, pins, thread starter stubs… are
/// not activities).
pub mod message_type {
    pub const DEFAULT: u8 = 0;
    pub const REPLY: u8 = 19;
}

/// A guild channel (`GET /guilds/{id}/channels`), or a thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    #[serde(with = "snowflake")]
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: u8,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, with = "snowflake_opt")]
    pub parent_id: Option<u64>,
    #[serde(default, with = "snowflake_opt")]
    pub last_message_id: Option<u64>,
    #[serde(default, with = "snowflake_opt")]
    pub owner_id: Option<u64>,
    #[serde(default)]
    pub thread_metadata: Option<ThreadMetadata>,
    #[serde(default)]
    pub message_count: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadMetadata {
    pub archived: bool,
    pub archive_timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub create_timestamp: Option<DateTime<Utc>>,
}

/// `GET /guilds/{id}/threads/active`, `GET /channels/{id}/threads/archived/public`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadList {
    pub threads: Vec<Channel>,
    #[serde(default)]
    pub has_more: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    #[serde(with = "snowflake")]
    pub id: u64,
    pub username: String,
    #[serde(default)]
    pub global_name: Option<String>,
    #[serde(default)]
    pub avatar: Option<String>,
    #[serde(default)]
    pub bot: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    #[serde(with = "snowflake")]
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: u8,
    #[serde(with = "snowflake")]
    pub channel_id: u64,
    pub author: User,
    #[serde(default)]
    pub content: Option<String>,
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub edited_timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    pub message_reference: Option<MessageReference>,
    /// The thread this message started, if it started one.
    #[serde(default)]
    pub thread: Option<Channel>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageReference {
    #[serde(default, rename = "type")]
    pub kind: Option<u8>,
    #[serde(default, with = "snowflake_opt")]
    pub message_id: Option<u64>,
    #[serde(default, with = "snowflake_opt")]
    pub channel_id: Option<u64>,
}

/// A snowflake: a string of digits on the wire (a number is accepted too).
mod snowflake {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(super) enum Wire {
        Text(String),
        Number(u64),
    }

    impl Wire {
        pub(super) fn id<E: Error>(self) -> Result<u64, E> {
            match self {
                Self::Number(n) => Ok(n),
                Self::Text(s) => s
                    .parse()
                    .map_err(|_| E::custom(format!("`{s}` is not a snowflake"))),
            }
        }
    }

    pub fn serialize<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        Wire::deserialize(d)?.id()
    }
}

/// A nullable snowflake.
mod snowflake_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.serialize_str(&id.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<super::snowflake::Wire>::deserialize(d)?
            .map(super::snowflake::Wire::id)
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A message with every field the published description requires, its nullable ones null,
    /// and fields this integration does not read (Discord publishes no examples: this follows
    /// `MessageResponse` / `UserResponse` field by field).
    const MESSAGE: &str = r#"{
        "type": 19, "content": "see above", "mentions": [], "mention_roles": [],
        "attachments": [], "embeds": [], "timestamp": "2025-03-01T10:00:00.123000+00:00",
        "edited_timestamp": null, "flags": 0, "components": [], "id": "1345000000000000001",
        "channel_id": "1200000000000000000",
        "author": {"id": "80351110224678912", "username": "nelly", "avatar": null,
                   "discriminator": "0", "public_flags": 0, "flags": 0, "global_name": null,
                   "primary_guild": null, "avatar_decoration_data": null, "collectibles": null},
        "pinned": false, "mention_everyone": false, "tts": false,
        "message_reference": {"type": 0, "channel_id": "1200000000000000000",
                              "message_id": "1344999999999999999", "guild_id": "1100"},
        "referenced_message": null, "reactions": [], "nonce": 12, "position": 3
    }"#;

    const THREADS: &str = r#"{"threads": [{
        "id": "1300000000000000000", "type": 11, "last_message_id": null, "flags": 0,
        "last_pin_timestamp": null, "guild_id": "1100", "name": "How do I…?",
        "parent_id": "1200000000000000000", "rate_limit_per_user": 0, "owner_id": "80351110224678912",
        "thread_metadata": {"archived": true, "archive_timestamp": "2025-03-02T10:00:00+00:00",
                            "auto_archive_duration": 1440, "locked": false,
                            "create_timestamp": "2025-03-01T10:00:00+00:00"},
        "message_count": 4, "member_count": 2, "total_message_sent": 4, "applied_tags": []
    }], "members": [], "has_more": false}"#;

    #[test]
    fn the_published_shapes_parse_with_their_nulls() {
        let message: Message = serde_json::from_str(MESSAGE).unwrap();
        assert_eq!(message.id, 1_345_000_000_000_000_001);
        assert_eq!(message.author.global_name, None);
        assert_eq!(
            message.message_reference.unwrap().message_id,
            Some(1_344_999_999_999_999_999)
        );
        let list: ThreadList = serde_json::from_str(THREADS).unwrap();
        let thread = &list.threads[0];
        assert_eq!(thread.last_message_id, None);
        assert_eq!(thread.parent_id, Some(1_200_000_000_000_000_000));
        assert!(thread.thread_metadata.as_ref().unwrap().archived);
        // a guild channel without the optional fields at all
        let channel: Channel = serde_json::from_str(
            r#"{"id": "1", "type": 4, "flags": 0, "guild_id": "2", "name": "c", "position": 0}"#,
        )
        .unwrap();
        assert_eq!((channel.kind, channel.parent_id), (4, None));
        assert!(serde_json::from_str::<Channel>(r#"{"id": "x1", "type": 0}"#).is_err());
    }

    #[test]
    fn snowflakes_carry_their_time() {
        let at = DateTime::parse_from_rfc3339("2025-03-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = snowflake_at(at);
        assert_eq!(snowflake_time(id), at);
        assert_eq!(
            snowflake_time(id + 4_000),
            at,
            "sequence bits do not move the time"
        );
        assert_eq!(snowflake_at(DateTime::UNIX_EPOCH), 0);
    }
}
