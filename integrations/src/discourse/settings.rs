//! Discourse settings, checked at connect time.

use serde::{Deserialize, Serialize};
use tributary::settings::{Check, CredentialField, Settings, ids};

/// The post chunk Discourse itself serves (`TopicView`'s chunk size).
pub const DEFAULT_POSTS_PER_REQUEST: u32 = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscourseSettings {
    /// The forum's own URL (every Discourse is self-hosted or has its own domain).
    pub base_url: String,
    /// Category slugs to read, each with its subcategories; empty: every category the
    /// credential can see.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Topics per topic-list page asked for (Discourse may serve fewer; pages follow
    /// `more_topics_url` either way).
    #[serde(default = "default_topics_per_page")]
    pub topics_per_page: u32,
    /// Post ids per `/t/{id}/posts.json?post_ids[]=…` request.
    #[serde(default = "default_posts_per_request")]
    pub posts_per_request: u32,
    /// Requests per minute per credential: Discourse's `max_admin_api_reqs_per_minute` (60 by
    /// default); anonymous readers are limited per IP (`max_reqs_per_ip_per_minute`, 200).
    #[serde(default = "default_requests_per_minute")]
    pub max_requests_per_minute: u32,
}

fn default_topics_per_page() -> u32 {
    100
}

fn default_posts_per_request() -> u32 {
    DEFAULT_POSTS_PER_REQUEST
}

fn default_requests_per_minute() -> u32 {
    60
}

impl Settings for DiscourseSettings {
    const CREDENTIALS: Option<&'static [CredentialField]> = Some(&[
        CredentialField::secret("api_key", "a Discourse API key").optional(),
        CredentialField::plain("api_username", "the user the API key acts as").optional(),
    ]);

    fn check(&mut self, check: &mut Check<'_>) {
        check.base_url(
            "base_url",
            &mut self.base_url,
            "`https://meta.discourse.org`",
        );
        check.each("categories", &mut self.categories, |slug: &mut String| {
            *slug = slug.to_lowercase();
            ids::slug("a category slug")(slug)
        });
        check.range("topics_per_page", self.topics_per_page, 1..=100);
        check.range("posts_per_request", self.posts_per_request, 1..=100);
        check.range(
            "max_requests_per_minute",
            self.max_requests_per_minute,
            1..=6000,
        );
        let has_key = check.credentials().secret("api_key").is_some();
        let has_user = check.credentials().secret("api_username").is_some();
        if has_key && !has_user {
            check.problem(
                "credentials.api_username",
                "is required with an `api_key` (the user the key acts as, e.g. `system`)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    use tributary::Credentials;
    use tributary::settings::validate;

    #[test]
    fn defaults_and_normalized_slugs() {
        let s: DiscourseSettings = validate(
            &json!({"base_url": "https://forum.example.com/", "categories": ["Dev"]}),
            &Credentials::default(),
        )
        .unwrap();
        assert_eq!(s.base_url, "https://forum.example.com");
        assert_eq!(s.categories, ["dev"]);
        assert_eq!(
            (
                s.topics_per_page,
                s.posts_per_request,
                s.max_requests_per_minute
            ),
            (100, 20, 60)
        );
    }
}
