//! Dev.to / Forem settings, validated at connect time.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary::http::check_base_url;
use tributary::{Credentials, SettingsError};

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

impl DevtoSettings {
    /// Parses and checks settings (every problem reported with its field) and normalizes them:
    /// usernames lowercased, the base URL without a trailing `/`.
    pub fn validate(settings: &Value, credentials: &Credentials) -> Result<Self, SettingsError> {
        let mut parsed: Self =
            serde_json::from_value(settings.clone()).map_err(|e| SettingsError::from_serde(&e))?;
        let mut problems = SettingsError::collect();
        check_base_url(
            &mut problems,
            "base_url",
            &mut parsed.base_url,
            &format!("`{DEFAULT_BASE_URL}`"),
        );
        if parsed.organizations.is_empty() && parsed.users.is_empty() {
            problems.push(
                "",
                "name at least one of `organizations` or `users` (usernames whose articles to read)",
            );
        }
        check_usernames(&mut problems, "organizations", &mut parsed.organizations);
        check_usernames(&mut problems, "users", &mut parsed.users);
        if !(1..=MAX_PER_PAGE).contains(&parsed.per_page) {
            problems.push(
                "per_page",
                format!(
                    "must be between 1 and {MAX_PER_PAGE}, not {}",
                    parsed.per_page
                ),
            );
        }
        if !(1..=100).contains(&parsed.max_requests_per_second) {
            problems.push(
                "max_requests_per_second",
                format!(
                    "must be between 1 and 100, not {}",
                    parsed.max_requests_per_second
                ),
            );
        }
        match credentials.to_storage().get("api_key") {
            None => {}
            Some(Value::String(key)) if !key.trim().is_empty() => {}
            Some(_) => problems.push(
                "credentials.api_key",
                "must be a non-empty string (a DEV API key), or left out for public data",
            ),
        }
        problems.into_result(parsed)
    }
}

/// Forem usernames: letters, digits and `_` (organizations also `-`), at most 100 characters.
fn check_usernames(problems: &mut SettingsError, field: &str, names: &mut [String]) {
    for i in 0..names.len() {
        names[i] = names[i].trim().to_ascii_lowercase();
        let name = &names[i];
        let valid = !name.is_empty()
            && name.len() <= 100
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            problems.push(
                format!("{field}[{i}]"),
                format!("must be a username (letters, digits, _ and -), not `{name}`"),
            );
        } else if names[..i].contains(name) {
            problems.push(format!("{field}[{i}]"), format!("repeats `{name}`"));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_filled_in_and_names_normalized() {
        let s = DevtoSettings::validate(
            &json!({"users": ["Ben"], "organizations": [" forem-team "]}),
            &Credentials::default(),
        )
        .unwrap();
        assert_eq!(s.base_url, "https://dev.to/api");
        assert_eq!((s.per_page, s.max_requests_per_second), (1000, 3));
        assert_eq!(
            (s.users[0].as_str(), s.organizations[0].as_str()),
            ("ben", "forem-team")
        );
        let s = DevtoSettings::validate(
            &json!({"users": ["ben"], "base_url": "https://forem.example.com/api/"}),
            &Credentials::new(json!({"api_key": "abc"})),
        )
        .unwrap();
        assert_eq!(s.base_url, "https://forem.example.com/api");
    }

    #[test]
    fn every_problem_is_named() {
        let err = DevtoSettings::validate(
            &json!({
                "base_url": "dev.to/api",
                "users": ["ok", "not ok", "OK"],
                "organizations": [""],
                "per_page": 5000,
                "max_requests_per_second": 0
            }),
            &Credentials::new(json!({"api_key": ""})),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid settings: `base_url` must be an http(s) URL without query, such as \
             `https://dev.to/api`, not `dev.to/api`; `organizations[0]` must be a username \
             (letters, digits, _ and -), not ``; `users[1]` must be a username (letters, digits, \
             _ and -), not `not ok`; `users[2]` repeats `ok`; `per_page` must be between 1 and \
             1000, not 5000; `max_requests_per_second` must be between 1 and 100, not 0; \
             `credentials.api_key` must be a non-empty string (a DEV API key), or left out for \
             public data"
        );
    }

    #[test]
    fn nothing_to_read_unknown_fields_and_wrong_types_are_refused() {
        let none = DevtoSettings::validate(&json!({}), &Credentials::default()).unwrap_err();
        assert_eq!(
            none.to_string(),
            "invalid settings: name at least one of `organizations` or `users` (usernames whose \
             articles to read)"
        );
        let typo = DevtoSettings::validate(&json!({"user": ["ben"]}), &Credentials::default())
            .unwrap_err();
        assert!(typo.to_string().contains("unknown field `user`"), "{typo}");
        let wrong =
            DevtoSettings::validate(&json!({"users": "ben"}), &Credentials::default()).unwrap_err();
        assert!(
            wrong
                .to_string()
                .contains("invalid type: string \"ben\", expected a sequence"),
            "{wrong}"
        );
    }
}
