//! What integrations produce: members and their activities, keyed by the platform's stable ids.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Text for an optional field of a record: a `&str` or `String`, or an `Option` of one (`None`
/// leaves the field empty), so that a platform's optional fields are set without an `if let`.
pub trait OptionalText {
    fn into_text(self) -> Option<String>;
}

impl OptionalText for String {
    fn into_text(self) -> Option<String> {
        Some(self)
    }
}

impl OptionalText for &str {
    fn into_text(self) -> Option<String> {
        Some(self.to_owned())
    }
}

impl OptionalText for &String {
    fn into_text(self) -> Option<String> {
        Some(self.clone())
    }
}

impl<T: OptionalText> OptionalText for Option<T> {
    fn into_text(self) -> Option<String> {
        self.and_then(OptionalText::into_text)
    }
}

impl<'a, T> OptionalText for &'a Option<T>
where
    &'a T: OptionalText,
{
    fn into_text(self) -> Option<String> {
        self.as_ref().and_then(OptionalText::into_text)
    }
}

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

    pub fn display_name(mut self, name: impl OptionalText) -> Self {
        self.display_name = name.into_text();
        self
    }

    pub fn url(mut self, url: impl OptionalText) -> Self {
        self.url = url.into_text();
        self
    }

    pub fn joined_at(mut self, at: impl Into<Option<DateTime<Utc>>>) -> Self {
        self.joined_at = at.into();
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

    pub fn parent(mut self, source_parent_id: impl OptionalText) -> Self {
        self.source_parent_id = source_parent_id.into_text();
        self
    }

    pub fn channel(mut self, channel: impl OptionalText) -> Self {
        self.channel = channel.into_text();
        self
    }

    pub fn title(mut self, title: impl OptionalText) -> Self {
        self.title = title.into_text();
        self
    }

    pub fn body(mut self, body: impl OptionalText) -> Self {
        self.body = body.into_text();
        self
    }

    pub fn url(mut self, url: impl OptionalText) -> Self {
        self.url = url.into_text();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_take_text_or_nothing() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let none: Option<String> = None;
        let kept = Some("body".to_owned());
        let activity = Activity::new("a", "post", at, Member::new("1", "ada").display_name(&none))
            .title("title")
            .body(&kept)
            .url(none.clone())
            .parent(Some("p"));
        assert_eq!(activity.title.as_deref(), Some("title"));
        assert_eq!(activity.body.as_deref(), Some("body"));
        assert_eq!(activity.url, None);
        assert_eq!(activity.source_parent_id.as_deref(), Some("p"));
        assert_eq!(activity.member.display_name, None);
    }
}
