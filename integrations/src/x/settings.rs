//! X settings, checked at connect time.

use serde::{Deserialize, Serialize};
use tributary::settings::{Check, CredentialField, Settings, ids};

/// X's API v2 host (`https://api.twitter.com` answers the same).
pub const DEFAULT_BASE_URL: &str = "https://api.x.com";
/// The largest page X serves (`max_results`; recent search takes 10..=100).
pub const MAX_PER_PAGE: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XSettings {
    /// The API's root (paths start with `/2/`).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The numeric user id of the account whose mentions are read.
    #[serde(default)]
    pub account_id: Option<String>,
    /// Recent searches: hashtags (`#rust`) and keywords, in X's query syntax.
    #[serde(default)]
    pub searches: Vec<String>,
    /// Posts per request (`max_results`).
    #[serde(default = "default_per_page")]
    pub per_page: u32,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_per_page() -> u32 {
    MAX_PER_PAGE
}

impl Settings for XSettings {
    const CREDENTIALS: Option<&'static [CredentialField]> = Some(&[CredentialField::secret(
        "bearer_token",
        "an X app's bearer token",
    )]);

    fn check(&mut self, check: &mut Check<'_>) {
        check.base_url(
            "base_url",
            &mut self.base_url,
            &format!("`{DEFAULT_BASE_URL}`"),
        );
        check.at_least_one_of(
            &[
                ("account_id", self.account_id.is_none()),
                ("searches", self.searches.is_empty()),
            ],
            "an account whose mentions to read, or searches",
        );
        if let Some(id) = &mut self.account_id
            && let Err(message) = ids::numeric("a numeric user id")(id)
        {
            check.problem("account_id", message);
        }
        // X's recent search takes queries of up to 512 characters
        check.each("searches", &mut self.searches, ids::text(512));
        check.range("per_page", self.per_page, 10..=MAX_PER_PAGE);
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
    fn defaults_are_filled_in() {
        let s: XSettings = validate(
            &json!({"account_id": " 2244994945 ", "searches": ["#rustlang"]}),
            &Credentials::new(json!({"bearer_token": "AAAA"})),
        )
        .unwrap();
        assert_eq!(s.account_id.as_deref(), Some("2244994945"));
        assert_eq!((s.base_url.as_str(), s.per_page), (DEFAULT_BASE_URL, 100));
    }
}
