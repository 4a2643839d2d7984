//! Reddit settings, checked at connect time.

use serde::{Deserialize, Serialize};
use tributary::settings::{Check, CredentialField, Settings, ids};

/// Reddit's OAuth API host: every authenticated request goes there.
pub const DEFAULT_BASE_URL: &str = "https://oauth.reddit.com";
/// Where an application's id and secret are exchanged for a token.
pub const DEFAULT_TOKEN_URL: &str = "https://www.reddit.com/api/v1/access_token";
/// The largest listing page Reddit serves (`limit`).
pub const MAX_PER_PAGE: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedditSettings {
    /// The API's root.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The OAuth2 token endpoint.
    #[serde(default = "default_token_url")]
    pub token_url: String,
    /// Subreddits whose posts and comments are read (without `r/`).
    #[serde(default)]
    pub subreddits: Vec<String>,
    /// Keyword searches over all of Reddit (newest posts first).
    #[serde(default)]
    pub searches: Vec<String>,
    /// Posts per listing page (Reddit serves at most 100).
    #[serde(default = "default_per_page")]
    pub per_page: u32,
    /// Requests per minute per application: Reddit's free tier allows 100 (its headers pace the
    /// rest).
    #[serde(default = "default_requests_per_minute")]
    pub max_requests_per_minute: u32,
    /// The `User-Agent` Reddit requires: `<platform>:<app id>:<version> (by /u/<username>)`.
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_token_url() -> String {
    DEFAULT_TOKEN_URL.to_owned()
}

fn default_per_page() -> u32 {
    MAX_PER_PAGE
}

fn default_requests_per_minute() -> u32 {
    100
}

fn default_user_agent() -> String {
    format!(
        "server:tributary:{} (community data sync)",
        env!("CARGO_PKG_VERSION")
    )
}

impl Settings for RedditSettings {
    const CREDENTIALS: Option<&'static [CredentialField]> = Some(&[
        CredentialField::plain("client_id", "a Reddit application's client id"),
        CredentialField::secret("client_secret", "the application's secret"),
    ]);

    /// Subreddit names lowercased, without `r/`; URLs without a trailing `/`.
    fn check(&mut self, check: &mut Check<'_>) {
        check.base_url(
            "base_url",
            &mut self.base_url,
            &format!("`{DEFAULT_BASE_URL}`"),
        );
        check.base_url(
            "token_url",
            &mut self.token_url,
            &format!("`{DEFAULT_TOKEN_URL}`"),
        );
        check.at_least_one_of(
            &[
                ("subreddits", self.subreddits.is_empty()),
                ("searches", self.searches.is_empty()),
            ],
            "subreddits or keyword searches to read",
        );
        let subreddit = |name: &mut String| {
            let trimmed = name.trim();
            let bare = trimmed
                .strip_prefix("/r/")
                .or_else(|| trimmed.strip_prefix("r/"))
                .unwrap_or(trimmed);
            *name = bare.to_ascii_lowercase();
            ids::slug("a subreddit name")(name)
        };
        check.each("subreddits", &mut self.subreddits, subreddit);
        check.each("searches", &mut self.searches, ids::text(512));
        check.range("per_page", self.per_page, 1..=MAX_PER_PAGE);
        check.range(
            "max_requests_per_minute",
            self.max_requests_per_minute,
            1..=6000,
        );
        if self.user_agent.trim().is_empty() {
            check.problem(
                "user_agent",
                "must describe the application, such as `server:myapp:1.0 (by /u/me)`",
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
    fn defaults_are_filled_in_and_names_normalized() {
        let s: RedditSettings = validate(
            &json!({"subreddits": ["r/Rust", "/r/learnrust", " golang "]}),
            &Credentials::new(json!({"client_id": "abc", "client_secret": "def"})),
        )
        .unwrap();
        assert_eq!(s.subreddits, ["rust", "learnrust", "golang"]);
        assert_eq!(s.base_url, DEFAULT_BASE_URL);
        assert_eq!(s.token_url, DEFAULT_TOKEN_URL);
        assert_eq!(s.per_page, 100);
        assert!(s.user_agent.starts_with("server:tributary:"));
    }
}
