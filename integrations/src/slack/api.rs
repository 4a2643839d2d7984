//! Slack's Web API wire format: what its answers hold, the optional fields optional. Timestamps
//! (`ts`) are strings of seconds with microseconds (`"1512085950.000216"`), and a message's
//! `ts` is its id within its channel.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `response_metadata.next_cursor`: empty or missing at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseMetadata {
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// `conversations.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelList {
    pub channels: Vec<Channel>,
    #[serde(default)]
    pub response_metadata: Option<ResponseMetadata>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub is_member: Option<bool>,
    #[serde(default)]
    pub is_archived: Option<bool>,
    #[serde(default)]
    pub is_private: Option<bool>,
}

/// `conversations.history` and `conversations.replies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageList {
    pub messages: Vec<Message>,
    #[serde(default)]
    pub has_more: Option<bool>,
    #[serde(default)]
    pub response_metadata: Option<ResponseMetadata>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub ts: String,
    #[serde(default)]
    pub subtype: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub bot_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub thread_ts: Option<String>,
    #[serde(default)]
    pub reply_count: Option<u32>,
    #[serde(default)]
    pub latest_reply: Option<String>,
    #[serde(default)]
    pub edited: Option<Edited>,
    /// `message_changed`: the message as it is now.
    #[serde(default)]
    pub message: Option<Box<Message>>,
    /// `message_changed` / `message_deleted`: the message as it was.
    #[serde(default)]
    pub previous_message: Option<Box<Message>>,
    /// `message_deleted`: the `ts` of the deleted message.
    #[serde(default)]
    pub deleted_ts: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edited {
    #[serde(default)]
    pub user: Option<String>,
    pub ts: String,
}

/// `users.info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    pub user: User,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub real_name: Option<String>,
    #[serde(default)]
    pub deleted: Option<bool>,
    #[serde(default)]
    pub is_bot: Option<bool>,
    #[serde(default)]
    pub profile: Option<Profile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub real_name: Option<String>,
    #[serde(default)]
    pub image_192: Option<String>,
    #[serde(default)]
    pub image_72: Option<String>,
}

/// A `ts` as a time; `None` when it is not one.
pub fn ts_time(ts: &str) -> Option<DateTime<Utc>> {
    let (secs, micros) = ts.split_once('.').unwrap_or((ts, "0"));
    let secs: i64 = secs.parse().ok()?;
    let micros: u32 = format!("{micros:0<6}").get(..6)?.parse().ok()?;
    DateTime::from_timestamp(secs, micros * 1000)
}

/// A time as a `ts` (for `oldest`).
pub fn time_ts(at: DateTime<Utc>) -> String {
    format!("{}.{:06}", at.timestamp(), at.timestamp_subsec_micros())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // the published description's examples, unchanged
    const LIST: &str = r#"{"channels": [{"created": 1449252889, "creator": "U012A3CDE", "id": "C012AB3CD", "is_archived": false, "is_channel": true, "is_ext_shared": false, "is_general": true, "is_group": false, "is_im": false, "is_member": true, "is_mpim": false, "is_org_shared": false, "is_pending_ext_shared": false, "is_private": false, "is_shared": false, "name": "general", "name_normalized": "general", "num_members": 4, "pending_shared": [], "previous_names": [], "purpose": {"creator": "", "last_set": 0, "value": "This channel is for team-wide communication and announcements. All team members are in this channel."}, "topic": {"creator": "", "last_set": 0, "value": "Company-wide announcements and work-based matters"}, "unlinked": 0}], "ok": true, "response_metadata": {"next_cursor": "aW5uZXI6ZG9fbm90X3JlYWRfdGhpcw=="}}"#;
    const HISTORY: &str = r#"{"has_more": true, "messages": [{"text": "I find you punny and would like to smell your nose letter", "ts": "1512085950.000216", "type": "message", "user": "U012AB3CDE"}, {"text": "What, you want to smell my shoes better?", "ts": "1512104434.000490", "type": "message", "user": "U061F7AUR"}], "ok": true, "pin_count": 0, "response_metadata": {"next_cursor": "bmV4dF90czoxNTEyMDg1ODYxMDAwNTQz"}}"#;
    const REPLIES: &str = r#"{"has_more": true, "messages": [{"last_read": "1484678597.521003", "reply_count": 3, "subscribed": true, "text": "island", "thread_ts": "1482960137.003543", "ts": "1482960137.003543", "type": "message", "unread_count": 0, "user": "U061F7AUR"}, {"parent_user_id": "U061F7AUR", "text": "one island", "thread_ts": "1482960137.003543", "ts": "1483037603.017503", "type": "message", "user": "U061F7AUR"}], "ok": true, "response_metadata": {"next_cursor": "bmV4dF90czoxNDg0Njc4MjkwNTE3MDkx"}}"#;
    const USER: &str = r#"{"ok": true, "user": {"color": "9f69e7", "deleted": false, "has_2fa": false, "id": "W012A3CDE", "is_admin": true, "is_app_user": false, "is_bot": false, "is_owner": false, "is_primary_owner": false, "is_restricted": false, "is_ultra_restricted": false, "name": "spengler", "profile": {"avatar_hash": "ge3b51ca72de", "display_name": "spengler", "display_name_normalized": "spengler", "email": "spengler@ghostbusters.example.com", "image_192": "https://.../avatar/e3b51ca72dee4ef87916ae2b9240df50.jpg", "image_24": "https://.../avatar/e3b51ca72dee4ef87916ae2b9240df50.jpg", "image_32": "https://.../avatar/e3b51ca72dee4ef87916ae2b9240df50.jpg", "image_48": "https://.../avatar/e3b51ca72dee4ef87916ae2b9240df50.jpg", "image_512": "https://.../avatar/e3b51ca72dee4ef87916ae2b9240df50.jpg", "image_72": "https://.../avatar/e3b51ca72dee4ef87916ae2b9240df50.jpg", "real_name": "Egon Spengler", "real_name_normalized": "Egon Spengler", "status_emoji": ":books:", "status_text": "Print is dead", "team": "T012AB3C4"}, "real_name": "Egon Spengler", "team_id": "T012AB3C4", "tz": "America/Los_Angeles", "tz_label": "Pacific Daylight Time", "tz_offset": -25200, "updated": 1502138686}}"#;

    #[test]
    fn the_published_examples_parse_unchanged() {
        let list: ChannelList = serde_json::from_str(LIST).unwrap();
        assert_eq!(list.channels[0].id, "C012AB3CD");
        assert_eq!(list.channels[0].is_member, Some(true));
        let history: MessageList = serde_json::from_str(HISTORY).unwrap();
        assert_eq!(history.messages.len(), 2);
        assert_eq!(history.messages[0].thread_ts, None);
        assert_eq!(
            history.response_metadata.unwrap().next_cursor.as_deref(),
            Some("bmV4dF90czoxNTEyMDg1ODYxMDAwNTQz")
        );
        let replies: MessageList = serde_json::from_str(REPLIES).unwrap();
        assert_eq!(replies.messages[0].reply_count, Some(3));
        let user: UserInfo = serde_json::from_str(USER).unwrap();
        assert_eq!(
            user.user.profile.unwrap().real_name.as_deref(),
            Some("Egon Spengler")
        );
        // the smallest answers Slack gives
        let bare: MessageList = serde_json::from_str(r#"{"ok": true, "messages": []}"#).unwrap();
        assert!(bare.response_metadata.is_none());
    }

    #[test]
    fn ts_are_times_with_microseconds() {
        let at = ts_time("1512085950.000216").unwrap();
        assert_eq!(at.timestamp(), 1_512_085_950);
        assert_eq!(at.timestamp_subsec_micros(), 216);
        assert_eq!(time_ts(at), "1512085950.000216");
        assert_eq!(ts_time("1512085950").unwrap().timestamp(), 1_512_085_950);
        assert_eq!(ts_time("soon"), None);
    }
}
