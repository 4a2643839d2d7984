//! GitHub settings, validated at connect time.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary::http::check_base_url;
use tributary::{Credentials, SettingsError};

/// github.com's REST API; GitHub Enterprise Server is `https://HOST/api/v3`.
pub const DEFAULT_BASE_URL: &str = "https://api.github.com";
/// The largest page GitHub's list endpoints accept (`per_page` 1..=100).
pub const MAX_PER_PAGE: u32 = 100;

/// What is read of each repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Stargazers, with when they starred (`/stargazers`).
    Stars,
    /// Forks (`/forks`).
    Forks,
    /// Issues and pull requests opened (`/issues`: GitHub lists pull requests as issues).
    Issues,
    /// Comments on issues and pull requests (`/issues/comments`).
    Comments,
    /// Review comments on pull requests' diffs (`/pulls/comments`).
    ReviewComments,
}

impl Source {
    pub const ALL: [Self; 5] = [
        Self::Stars,
        Self::Forks,
        Self::Issues,
        Self::Comments,
        Self::ReviewComments,
    ];

    /// The path of its list under `/repos/{owner}/{repo}`.
    pub fn path(self) -> &'static str {
        match self {
            Self::Stars => "/stargazers",
            Self::Forks => "/forks",
            Self::Issues => "/issues",
            Self::Comments => "/issues/comments",
            Self::ReviewComments => "/pulls/comments",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stars => "stars",
            Self::Forks => "forks",
            Self::Issues => "issues",
            Self::Comments => "comments",
            Self::ReviewComments => "review_comments",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSettings {
    /// The REST API root: `https://api.github.com`, or `https://HOST/api/v3` for GitHub Enterprise.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// `owner/name` of every repository to read.
    pub repositories: Vec<String>,
    /// What to read of each repository (all of it by default).
    #[serde(default = "default_sources")]
    pub sources: Vec<Source>,
    /// Items per request: the largest GitHub accepts by default.
    #[serde(default = "default_per_page")]
    pub per_page: u32,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_sources() -> Vec<Source> {
    Source::ALL.to_vec()
}

fn default_per_page() -> u32 {
    MAX_PER_PAGE
}

impl GithubSettings {
    /// Parses and checks settings (every problem reported with its field) and normalizes them:
    /// the base URL without a trailing `/`, repositories trimmed, sources sorted.
    pub fn validate(settings: &Value, credentials: &Credentials) -> Result<Self, SettingsError> {
        let mut parsed: Self =
            serde_json::from_value(settings.clone()).map_err(|e| SettingsError::from_serde(&e))?;
        let mut problems = SettingsError::collect();
        check_base_url(
            &mut problems,
            "base_url",
            &mut parsed.base_url,
            &format!("`{DEFAULT_BASE_URL}` or `https://github.example.com/api/v3`"),
        );
        if parsed.repositories.is_empty() {
            problems.push(
                "repositories",
                "must name at least one repository as `owner/name`",
            );
        }
        for i in 0..parsed.repositories.len() {
            let name = parsed.repositories[i].trim().to_owned();
            let field = format!("repositories[{i}]");
            if !is_repository(&name) {
                problems.push(
                    field,
                    format!("must be a repository as `owner/name`, not `{name}`"),
                );
            } else if parsed.repositories[..i]
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&name))
            {
                problems.push(field, format!("repeats `{name}`"));
            }
            parsed.repositories[i] = name;
        }
        if parsed.sources.is_empty() {
            problems.push(
                "sources",
                "must name at least one of stars, forks, issues, comments, review_comments",
            );
        }
        parsed.sources.sort();
        parsed.sources.dedup();
        if !(1..=MAX_PER_PAGE).contains(&parsed.per_page) {
            problems.push(
                "per_page",
                format!(
                    "must be between 1 and {MAX_PER_PAGE}, not {}",
                    parsed.per_page
                ),
            );
        }
        match credentials.to_storage().get("token") {
            None => {}
            Some(Value::String(token)) if !token.trim().is_empty() => {}
            Some(_) => problems.push(
                "credentials.token",
                "must be a non-empty string (a personal access token or an installation token), \
                 or left out for public repositories (60 requests an hour)",
            ),
        }
        problems.into_result(parsed)
    }
}

/// `owner/name`: an owner of letters, digits and single hyphens (at most 39), a name of letters,
/// digits, `.`, `-` and `_` (at most 100, not `.` or `..`).
fn is_repository(full_name: &str) -> bool {
    let Some((owner, name)) = full_name.split_once('/') else {
        return false;
    };
    let owner_ok = (1..=39).contains(&owner.len())
        && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !owner.starts_with('-');
    let name_ok = (1..=100).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && name != "."
        && name != "..";
    owner_ok && name_ok
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_filled_in() {
        let s = GithubSettings::validate(
            &json!({"repositories": [" acme/widget "]}),
            &Credentials::default(),
        )
        .unwrap();
        assert_eq!(s.base_url, "https://api.github.com");
        assert_eq!(s.repositories, ["acme/widget"]);
        assert_eq!(s.sources, Source::ALL);
        assert_eq!(s.per_page, 100);
        let s = GithubSettings::validate(
            &json!({
                "repositories": ["acme/widget.rs"],
                "base_url": "https://github.example.com/api/v3/",
                "sources": ["issues", "stars", "issues"]
            }),
            &Credentials::new(json!({"token": "ghp_x"})),
        )
        .unwrap();
        assert_eq!(s.base_url, "https://github.example.com/api/v3");
        assert_eq!(s.sources, [Source::Stars, Source::Issues]);
    }

    #[test]
    fn every_problem_is_named() {
        let err = GithubSettings::validate(
            &json!({
                "base_url": "api.github.com",
                "repositories": ["acme/widget", "no-slash", "ACME/Widget", "a/..", "-x/y"],
                "sources": [],
                "per_page": 500
            }),
            &Credentials::new(json!({"token": ""})),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid settings: `base_url` must be an http(s) URL without query, such as \
             `https://api.github.com` or `https://github.example.com/api/v3`, not \
             `api.github.com`; `repositories[1]` must be a repository as `owner/name`, not \
             `no-slash`; `repositories[2]` repeats `ACME/Widget`; `repositories[3]` must be a \
             repository as `owner/name`, not `a/..`; `repositories[4]` must be a repository as \
             `owner/name`, not `-x/y`; `sources` must name at least one of stars, forks, issues, \
             comments, review_comments; `per_page` must be between 1 and 100, not 500; \
             `credentials.token` must be a non-empty string (a personal access token or an \
             installation token), or left out for public repositories (60 requests an hour)"
        );
    }

    #[test]
    fn nothing_to_read_unknown_fields_and_unknown_sources_are_refused() {
        let none = GithubSettings::validate(&json!({"repositories": []}), &Credentials::default())
            .unwrap_err();
        assert_eq!(
            none.to_string(),
            "invalid settings: `repositories` must name at least one repository as `owner/name`"
        );
        let missing = GithubSettings::validate(&json!({}), &Credentials::default()).unwrap_err();
        assert!(
            missing.to_string().contains("missing field `repositories`"),
            "{missing}"
        );
        let typo = GithubSettings::validate(&json!({"repos": ["a/b"]}), &Credentials::default())
            .unwrap_err();
        assert!(typo.to_string().contains("unknown field `repos`"), "{typo}");
        let source = GithubSettings::validate(
            &json!({"repositories": ["a/b"], "sources": ["watchers"]}),
            &Credentials::default(),
        )
        .unwrap_err();
        assert!(
            source.to_string().contains("unknown variant `watchers`"),
            "{source}"
        );
    }
}
