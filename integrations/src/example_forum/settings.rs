//! Example Forum settings, validated at connect time.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary::{Credentials, SettingsError};

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
}

fn default_per_page() -> u32 {
    100
}

impl ExampleForumSettings {
    /// Parses and checks settings; every problem is reported with its field.
    pub fn validate(settings: &Value, credentials: &Credentials) -> Result<Self, SettingsError> {
        let parsed: Self =
            serde_json::from_value(settings.clone()).map_err(|e| SettingsError::from_serde(&e))?;
        let mut problems = SettingsError::collect();
        if !(parsed.base_url.starts_with("http://") || parsed.base_url.starts_with("https://"))
            || parsed.base_url.len() < "http://x".len()
        {
            problems.push(
                "base_url",
                format!("must be an http(s) URL, not `{}`", parsed.base_url),
            );
        }
        for (i, channel) in parsed.channels.iter().enumerate() {
            if channel.is_empty()
                || !channel
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                problems.push(
                    format!("channels[{i}]"),
                    format!("must be a channel id (letters, digits, - and _), not `{channel}`"),
                );
            } else if parsed.channels[..i].contains(channel) {
                problems.push(format!("channels[{i}]"), format!("repeats `{channel}`"));
            }
        }
        if !(1..=100).contains(&parsed.per_page) {
            problems.push(
                "per_page",
                format!("must be between 1 and 100, not {}", parsed.per_page),
            );
        }
        if credentials
            .secret("token")
            .is_none_or(|t| t.expose().is_empty())
        {
            problems.push("credentials.token", "is required (the forum's API token)");
        }
        problems.into_result(parsed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn creds() -> Credentials {
        Credentials::new(json!({"token": "t0ken-123"}))
    }

    #[test]
    fn defaults_are_filled_in() {
        let s =
            ExampleForumSettings::validate(&json!({"base_url": "http://127.0.0.1:9"}), &creds())
                .unwrap();
        assert_eq!((s.per_page, s.channels.len()), (100, 0));
    }

    #[test]
    fn every_problem_is_named() {
        let err = ExampleForumSettings::validate(
            &json!({"base_url": "ftp://x", "channels": ["ok", "", "ok"], "per_page": 500}),
            &Credentials::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid settings: `base_url` must be an http(s) URL, not `ftp://x`; \
             `channels[1]` must be a channel id (letters, digits, - and _), not ``; \
             `channels[2]` repeats `ok`; `per_page` must be between 1 and 100, not 500; \
             `credentials.token` is required (the forum's API token)"
        );
    }

    #[test]
    fn unknown_and_missing_fields_are_refused() {
        let err = ExampleForumSettings::validate(
            &json!({"base_url": "http://h", "chanels": []}),
            &creds(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `chanels`"), "{err}");
        let err = ExampleForumSettings::validate(&json!({}), &creds()).unwrap_err();
        assert!(
            err.to_string().contains("missing field `base_url`"),
            "{err}"
        );
    }
}
