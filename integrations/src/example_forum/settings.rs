//! Example Forum settings, checked at connect time.

use serde::{Deserialize, Serialize};
use tributary::settings::{Check, CredentialField, Settings, ids};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExampleForumSettings {
    /// Where the forum's API lives, e.g. `http://127.0.0.1:8090`.
    pub base_url: String,
    /// Channel ids to read; empty reads every channel.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Items per request (the API accepts up to 100).
    #[serde(default = "default_per_page")]
    pub per_page: u32,
    /// Whether to read each channel's replies (`false`: its posts only, one stream a channel).
    #[serde(default = "read_replies")]
    pub replies: bool,
}

fn default_per_page() -> u32 {
    100
}

fn read_replies() -> bool {
    true
}

impl Settings for ExampleForumSettings {
    const CREDENTIALS: Option<&'static [CredentialField]> =
        Some(&[CredentialField::secret("token", "the forum's API token")]);

    fn check(&mut self, check: &mut Check<'_>) {
        check.base_url(
            "base_url",
            &mut self.base_url,
            "`https://forum.example.com`",
        );
        check.each("channels", &mut self.channels, ids::slug("a channel id"));
        check.range("per_page", self.per_page, 1..=100);
    }
}
