//! X API v2's wire format (no published API description is in `/work/shared/specs`: this follows
//! X's public API v2 documentation): posts (`data`) with the fields asked for, the authors in
//! `includes.users` (`expansions=author_id`), `meta.next_token` for the next page; a page with
//! nothing has no `data` at all; ids are decimal strings (snowflakes).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One page of posts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostPage {
    #[serde(default)]
    pub data: Vec<Tweet>,
    #[serde(default)]
    pub includes: Includes,
    #[serde(default)]
    pub meta: Meta,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Includes {
    #[serde(default)]
    pub users: Vec<User>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub result_count: u64,
    #[serde(default)]
    pub newest_id: Option<String>,
    #[serde(default)]
    pub oldest_id: Option<String>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tweet {
    pub id: String,
    pub text: String,
    pub author_id: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub in_reply_to_user_id: Option<String>,
    #[serde(default)]
    pub referenced_tweets: Vec<Reference>,
    #[serde(default)]
    pub entities: Option<Entities>,
    #[serde(default)]
    pub public_metrics: Option<serde_json::Value>,
    #[serde(default)]
    pub lang: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// `replied_to`, `quoted` or `retweeted`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entities {
    #[serde(default)]
    pub mentions: Vec<Mention>,
    #[serde(default)]
    pub hashtags: Vec<Hashtag>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mention {
    pub username: String,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hashtag {
    pub tag: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub name: String,
    #[serde(default)]
    pub profile_image_url: Option<String>,
    #[serde(default)]
    pub verified: Option<bool>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A recent-search answer in the shape of X's documentation example.
    const SEARCH: &str = r#"{
      "data": [{
        "author_id": "2244994945", "conversation_id": "1373001119480344583",
        "created_at": "2021-03-19T19:59:10.000Z", "id": "1373001119480344583", "lang": "en",
        "text": "Looking to get started with the Twitter API but new to APIs in general? #TwitterDev",
        "edit_history_tweet_ids": ["1373001119480344583"],
        "entities": {"hashtags": [{"start": 71, "end": 82, "tag": "TwitterDev"}]},
        "public_metrics": {"retweet_count": 1, "reply_count": 0, "like_count": 3, "quote_count": 0}
      }, {
        "author_id": "6253282", "created_at": "2021-03-19T20:01:00.000Z", "id": "1373001580000000000",
        "text": "@TwitterDev thanks!", "in_reply_to_user_id": "2244994945",
        "referenced_tweets": [{"type": "replied_to", "id": "1373001119480344583"}],
        "entities": {"mentions": [{"start": 0, "end": 11, "username": "TwitterDev", "id": "2244994945"}]}
      }],
      "includes": {"users": [
        {"id": "2244994945", "name": "Twitter Dev", "username": "TwitterDev",
         "profile_image_url": "https://pbs.twimg.com/profile_images/1/dev_normal.png"},
        {"id": "6253282", "name": "Twitter API", "username": "TwitterAPI"}
      ]},
      "meta": {"newest_id": "1373001580000000000", "oldest_id": "1373001119480344583",
               "result_count": 2, "next_token": "b26v89c19zqg8o3fosbsuq2yfbq3pq2jv8gq9q4tqe3wl"}
    }"#;

    #[test]
    fn a_search_page_parses_and_an_empty_one_too() {
        let page: PostPage = serde_json::from_str(SEARCH).unwrap();
        assert_eq!(page.data.len(), 2);
        assert_eq!(page.data[1].referenced_tweets[0].kind, "replied_to");
        assert_eq!(page.includes.users[1].profile_image_url, None);
        assert!(page.meta.next_token.is_some());
        let empty: PostPage = serde_json::from_str(r#"{"meta": {"result_count": 0}}"#).unwrap();
        assert!(empty.data.is_empty() && empty.meta.next_token.is_none());
    }
}
