//! Dev.to / Forem settings, validated at connect time.

use serde::{Deserialize, Serialize};
use tributary::settings::{Check, CredentialField, Settings, ids};

/// Dev.to's own API; a self-hosted Forem is `https://forem.example.com/api`.
pub const DEFAULT_BASE_URL: &str = "https://dev.to/api";
/// The largest page Forem accepts (`per_page` 1..=1000).
pub const MAX_PER_PAGE: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevtoSettings {
    /// The Forem API root, ending in `/api`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Organization usernames whose articles are read (`/organizations/{username}/articles`).
    #[serde(default)]
    pub organizations: Vec<String>,
    /// User usernames whose articles are read (`/articles?username=`).
    #[serde(default)]
    pub users: Vec<String>,
    /// Articles per request: the largest the API accepts by default.
    #[serde(default = "default_per_page")]
    pub per_page: u32,
    /// Requests per second per API key (Forem throttles its API per client).
    #[serde(default = "default_requests_per_second")]
    pub max_requests_per_second: u32,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_per_page() -> u32 {
    MAX_PER_PAGE
}

fn default_requests_per_second() -> u32 {
    3
}

impl Settings for DevtoSettings {
    const CREDENTIALS: Option<&'static [CredentialField]> =
        Some(&[CredentialField::secret("api_key", "a DEV API key").optional()]);

    /// Usernames lowercased, the base URL without a trailing `/`.
    fn check(&mut self, check: &mut Check<'_>) {
        check.base_url(
            "base_url",
            &mut self.base_url,
            &format!("`{DEFAULT_BASE_URL}`"),
        );
        check.at_least_one_of(
            &[
                ("organizations", self.organizations.is_empty()),
                ("users", self.users.is_empty()),
            ],
            "usernames whose articles to read",
        );
        let username = |name: &mut String| {
            *name = name.to_ascii_lowercase();
            ids::slug("a username")(name)
        };
        check.each("organizations", &mut self.organizations, username);
        check.each("users", &mut self.users, username);
        check.range("per_page", self.per_page, 1..=MAX_PER_PAGE);
        check.range(
            "max_requests_per_second",
            self.max_requests_per_second,
            1..=100,
        );
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
        let s: DevtoSettings = validate(
            &json!({"users": ["Ben"], "organizations": [" forem-team "], "base_url": "https://forem.example.com/api/"}),
            &Credentials::default(),
        )
        .unwrap();
        assert_eq!(s.base_url, "https://forem.example.com/api");
        assert_eq!((s.per_page, s.max_requests_per_second), (1000, 3));
        assert_eq!(
            (s.users[0].as_str(), s.organizations[0].as_str()),
            ("ben", "forem-team")
        );
    }
}
