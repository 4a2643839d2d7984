//! Discord settings, checked at connect time.

use serde::{Deserialize, Serialize};
use tributary::settings::{Check, CredentialField, Settings, ids};

/// The hosted API.
pub const DEFAULT_BASE_URL: &str = "https://discord.com/api/v10";
/// Discord bans a bot at 10,000 invalid requests (401, 403, 429) in 10 minutes: stop well before.
pub const DEFAULT_MAX_INVALID_REQUESTS: u32 = 5_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordSettings {
    /// The API's root.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The guild (server) to read: its id.
    pub guild_id: String,
    /// Only these channels (ids) and their threads; every readable one when empty.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Messages per request (Discord serves up to 100).
    #[serde(default = "default_per_page")]
    pub per_page: u32,
    /// Invalid answers (401, 403, 429) in 10 minutes after which nothing more is sent.
    #[serde(default = "default_max_invalid_requests")]
    pub max_invalid_requests: u32,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_per_page() -> u32 {
    100
}

fn default_max_invalid_requests() -> u32 {
    DEFAULT_MAX_INVALID_REQUESTS
}

impl Settings for DiscordSettings {
    const CREDENTIALS: Option<&'static [CredentialField]> =
        Some(&[CredentialField::secret("bot_token", "a Discord bot token")]);

    fn check(&mut self, check: &mut Check<'_>) {
        check.base_url(
            "base_url",
            &mut self.base_url,
            &format!("`{DEFAULT_BASE_URL}`"),
        );
        if let Err(message) = ids::numeric("a guild id")(&mut self.guild_id) {
            check.problem("guild_id", message);
        }
        check.each("channels", &mut self.channels, ids::numeric("a channel id"));
        check.range("per_page", self.per_page, 1..=100);
        check.range("max_invalid_requests", self.max_invalid_requests, 1..=9_000);
    }
}
