//! What integrations produce: members and their activities, keyed by the platform's stable ids.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A person on a platform. Upserted by `(tenant, platform, source_id)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The platform's stable id of the member (a user id, not a display name where ids exist).
    pub source_id: String,
    pub username: String,
    pub display_name: Option<String>,
    pub url: Option<String>,
    pub joined_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub attributes: Value,
}

impl Member {
    pub fn new(source_id: impl Into<String>, username: impl Into<String>) -> Self {
        Self {
            source_id: source_id.into(),
            username: username.into(),
            display_name: None,
            url: None,
            joined_at: None,
            attributes: Value::Object(Default::default()),
        }
    }

    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    pub fn joined_at(mut self, at: DateTime<Utc>) -> Self {
        self.joined_at = Some(at);
        self
    }

    pub fn attributes(mut self, attributes: Value) -> Self {
        self.attributes = attributes;
        self
    }
}

/// Something a member did. Upserted by `(tenant, platform, source_id)`; its member is upserted
/// with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// Deterministic and stable: the same record read twice yields the same id.
    pub source_id: String,
    pub activity_type: String,
    pub occurred_at: DateTime<Utc>,
    pub member: Member,
    /// The source id of the activity this one answers (a comment's post, a reply's comment).
    pub source_parent_id: Option<String>,
    /// Where it happened: a repository, a channel, a tag.
    pub channel: Option<String>,
    pub title: Option<String>,
    pub body: Option<String>,
    pub url: Option<String>,
    #[serde(default)]
    pub attributes: Value,
}

impl Activity {
    pub fn new(
        source_id: impl Into<String>,
        activity_type: impl Into<String>,
        occurred_at: DateTime<Utc>,
        member: Member,
    ) -> Self {
        Self {
            source_id: source_id.into(),
            activity_type: activity_type.into(),
            occurred_at,
            member,
            source_parent_id: None,
            channel: None,
            title: None,
            body: None,
            url: None,
            attributes: Value::Object(Default::default()),
        }
    }

    pub fn parent(mut self, source_parent_id: impl Into<String>) -> Self {
        self.source_parent_id = Some(source_parent_id.into());
        self
    }

    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    pub fn attributes(mut self, attributes: Value) -> Self {
        self.attributes = attributes;
        self
    }
}

/// One write a stream outcome asks for.
// Activities are by far the common case: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    UpsertMember(Member),
    /// Upserts the activity and its member.
    UpsertActivity(Activity),
}
