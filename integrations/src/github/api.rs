//! GitHub's REST wire format (v3, `X-GitHub-Api-Version: 2022-11-28`): the fields of the objects
//! the integration reads. Unknown fields are ignored; a field that is missing or of the wrong type
//! fails the page with its path.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `simple-user`: an author, a stargazer, a fork's owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The stable identity of the member (logins can change).
    pub id: u64,
    pub login: String,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
    /// `User`, `Organization` or `Bot`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// `GET /repos/{owner}/{repo}` (and each item of `/forks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repository {
    pub id: u64,
    /// `owner/name` as GitHub spells it.
    pub full_name: String,
    #[serde(default)]
    pub html_url: Option<String>,
    pub owner: User,
    #[serde(default)]
    pub stargazers_count: u64,
    #[serde(default)]
    pub forks_count: u64,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

/// An item of `/stargazers` asked for with `Accept: application/vnd.github.star+json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stargazer {
    pub starred_at: DateTime<Utc>,
    pub user: User,
}

/// Present on an item of `/issues` that is a pull request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequestRef {
    #[serde(default)]
    pub merged_at: Option<DateTime<Utc>>,
}

/// An item of `/repos/{owner}/{repo}/issues`: an issue, or a pull request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    pub id: u64,
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    /// `null` for an author whose account is gone.
    #[serde(default)]
    pub user: Option<User>,
    pub state: String,
    pub html_url: String,
    #[serde(default)]
    pub comments: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub closed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub labels: Vec<Label>,
    #[serde(default)]
    pub pull_request: Option<PullRequestRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Label {
    Named { name: String },
    Bare(String),
}

impl Label {
    pub fn name(&self) -> &str {
        match self {
            Self::Named { name } | Self::Bare(name) => name,
        }
    }
}

/// An item of `/repos/{owner}/{repo}/issues/comments`: a comment on an issue or on a pull
/// request's conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueComment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub user: Option<User>,
    /// `https://github.com/o/r/issues/7#issuecomment-1`, or `…/pull/7#…` on a pull request.
    pub html_url: String,
    /// `https://api.github.com/repos/o/r/issues/7`: the issue (or pull request) it belongs to.
    pub issue_url: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An item of `/repos/{owner}/{repo}/pulls/comments`: a comment on a pull request's diff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewComment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub user: Option<User>,
    pub html_url: String,
    /// `https://api.github.com/repos/o/r/pulls/7`.
    pub pull_request_url: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub in_reply_to_id: Option<u64>,
    #[serde(default)]
    pub pull_request_review_id: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
