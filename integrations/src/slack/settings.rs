//! Slack settings, checked at connect time.

use serde::{Deserialize, Serialize};
use tributary::settings::{Check, CredentialField, Settings};

/// The hosted Web API.
pub const DEFAULT_BASE_URL: &str = "https://slack.com/api";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// The Web API's root.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The workspace's own URL (`https://acme.slack.com`), for message permalinks and profile
    /// links; left out, links point to `https://app.slack.com`.
    #[serde(default)]
    pub workspace_url: Option<String>,
    /// Only these channels (ids such as `C012AB3CD`); every public channel the bot is in when
    /// empty.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Items per request (Slack advises at most 200; it serves up to 1,000).
    #[serde(default = "default_per_page")]
    pub per_page: u32,
    /// How far back a check looks for threads with new replies: Slack lists a thread under its
    /// first message only.
    #[serde(default = "default_thread_lookback_days")]
    pub thread_lookback_days: u32,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_per_page() -> u32 {
    200
}

fn default_thread_lookback_days() -> u32 {
    7
}

fn channel_id(value: &mut String) -> Result<(), String> {
    *value = value.trim().to_owned();
    let valid = value.len() >= 2
        && value.len() <= 20
        && value.starts_with(['C', 'G'])
        && value
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "must be a channel id (such as `C012AB3CD`), not `{value}`"
        ))
    }
}

impl Settings for SlackSettings {
    const CREDENTIALS: Option<&'static [CredentialField]> = Some(&[CredentialField::secret(
        "bot_token",
        "a Slack bot token (xoxb-…)",
    )]);

    fn check(&mut self, check: &mut Check<'_>) {
        check.base_url(
            "base_url",
            &mut self.base_url,
            &format!("`{DEFAULT_BASE_URL}`"),
        );
        if let Some(url) = &mut self.workspace_url {
            check.base_url("workspace_url", url, "`https://acme.slack.com`");
        }
        check.each("channels", &mut self.channels, channel_id);
        check.range("per_page", self.per_page, 1..=1000);
        check.range("thread_lookback_days", self.thread_lookback_days, 0..=90);
    }
}
