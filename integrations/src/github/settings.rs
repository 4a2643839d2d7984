//! GitHub settings, validated at connect time.

use std::fmt;

use serde::{Deserialize, Serialize};
use tributary::settings::{Check, CredentialField, Settings};

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

impl Settings for GithubSettings {
    const CREDENTIALS: Option<&'static [CredentialField]> = Some(&[CredentialField::secret(
        "token",
        "a personal access token or an installation token; without it, public repositories at 60 \
         requests an hour",
    )
    .optional()]);

    /// The base URL without a trailing `/`, repositories trimmed, sources sorted.
    fn check(&mut self, check: &mut Check<'_>) {
        check.base_url(
            "base_url",
            &mut self.base_url,
            &format!("`{DEFAULT_BASE_URL}` or `https://github.example.com/api/v3`"),
        );
        check.non_empty(
            "repositories",
            &self.repositories,
            "repository as `owner/name`",
        );
        for i in 0..self.repositories.len() {
            let name = self.repositories[i].trim().to_owned();
            let field = format!("repositories[{i}]");
            if !is_repository(&name) {
                check.problem(
                    field,
                    format!("must be a repository as `owner/name`, not `{name}`"),
                );
            } else if self.repositories[..i]
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&name))
            {
                // GitHub's names are case-insensitive
                check.problem(field, format!("repeats `{name}`"));
            }
            self.repositories[i] = name;
        }
        check.non_empty(
            "sources",
            &self.sources,
            "of stars, forks, issues, comments, review_comments",
        );
        self.sources.sort();
        self.sources.dedup();
        check.range("per_page", self.per_page, 1..=MAX_PER_PAGE);
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
    use tributary::Credentials;
    use tributary::settings::validate;

    #[test]
    fn defaults_are_filled_in_and_sources_sorted() {
        let s: GithubSettings = validate(
            &json!({"repositories": [" acme/widget "]}),
            &Credentials::default(),
        )
        .unwrap();
        assert_eq!(s.base_url, "https://api.github.com");
        assert_eq!(s.repositories, ["acme/widget"]);
        assert_eq!(s.sources, Source::ALL);
        assert_eq!(s.per_page, 100);
        let s: GithubSettings = validate(
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
}
