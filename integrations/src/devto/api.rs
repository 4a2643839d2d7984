//! The Forem API's wire format (v1, `Accept: application/vnd.forem.api-v1+json`): the fields of
//! `ArticleIndex`, `Comment` and their users that the integration reads. Unknown fields are
//! ignored; a field that is missing or of the wrong type fails the page with its path.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `SharedUser`: an article's or a comment's author.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The stable identity of the member (usernames can change).
    pub user_id: u64,
    pub username: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub twitter_username: Option<String>,
    #[serde(default)]
    pub github_username: Option<String>,
    #[serde(default)]
    pub website_url: Option<String>,
    #[serde(default)]
    pub profile_image: Option<String>,
}

/// `SharedOrganization`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    pub username: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub slug: Option<String>,
}

/// `ArticleIndex`: an article in a list (`/articles?username=`, `/organizations/{u}/articles`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Article {
    pub id: u64,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    pub url: String,
    #[serde(default)]
    pub comments_count: u64,
    #[serde(default)]
    pub public_reactions_count: u64,
    #[serde(default)]
    pub reading_time_minutes: Option<u64>,
    pub published_at: DateTime<Utc>,
    /// When the last comment was made (the publication time when there is none).
    #[serde(default)]
    pub last_comment_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub tag_list: Vec<String>,
    pub user: User,
    #[serde(default)]
    pub organization: Option<Organization>,
}

/// `Comment`, with its replies nested in `children` (`/comments?a_id=`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub id_code: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub body_html: Option<String>,
    /// Absent or `null` for a comment whose author deleted their account: it yields no activity,
    /// its replies still do.
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub children: Vec<Comment>,
}
