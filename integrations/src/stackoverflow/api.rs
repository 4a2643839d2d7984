//! The Stack Exchange API's wire format (2.3; the description kept is 2.2's, the shapes are the
//! same): the common wrapper and the fields the integration reads, every one optional that the
//! description does not promise (it promises none; a deleted owner has no `user_id`).

use serde::{Deserialize, Serialize};

/// Every answer's wrapper: `items`, `has_more`, the daily quota, and a `backoff` when the method
/// must wait before its next call (read by the toolkit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wrapper<T> {
    pub items: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub quota_max: Option<u64>,
    #[serde(default)]
    pub quota_remaining: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<u64>,
}

/// A post's author (`shallow_user`); `user_type: does_not_exist` for a deleted account, with no
/// `user_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    #[serde(default)]
    pub user_id: Option<i64>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub profile_image: Option<String>,
    #[serde(default)]
    pub reputation: Option<i64>,
    #[serde(default)]
    pub user_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub question_id: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub owner: Option<Owner>,
    #[serde(default)]
    pub answer_count: u64,
    #[serde(default)]
    pub is_answered: bool,
    /// Unix seconds.
    pub creation_date: i64,
    #[serde(default)]
    pub last_activity_date: Option<i64>,
    #[serde(default)]
    pub link: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub answer_id: u64,
    pub question_id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub owner: Option<Owner>,
    #[serde(default)]
    pub is_accepted: bool,
    pub creation_date: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub comment_id: u64,
    pub post_id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub owner: Option<Owner>,
    pub creation_date: i64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The description has no examples: an answer in its shapes (`score` typed boolean there,
    /// `share_link` an integer; neither is read), a deleted owner, fields left out.
    #[test]
    fn the_descriptions_shapes_parse_deleted_owners_and_missing_fields_included() {
        let answers: Wrapper<Answer> = serde_json::from_str(
            r#"{"items": [{"accepted": false, "answer_id": 5, "awarded_bounty_amount": 0,
                "awarded_bounty_users": [], "body": "<p>x</p>", "can_flag": true,
                "comment_count": 0, "comments": [], "community_owned_date": 0,
                "content_license": "CC BY-SA 4.0", "creation_date": 1700000000,
                "down_vote_count": 0, "is_accepted": true, "last_activity_date": 1700000000,
                "link": "https://stackoverflow.com/a/5", "owner": {"user_type": "does_not_exist",
                "display_name": "user123"}, "question_id": 4, "score": true, "share_link": 5,
                "tags": [], "title": "T", "up_vote_count": 1, "upvoted": false},
               {"answer_id": 6, "question_id": 4, "creation_date": 1700000001}],
               "has_more": false, "backoff": 10, "quota_max": 300, "quota_remaining": 298}"#,
        )
        .unwrap();
        assert_eq!(answers.backoff, Some(10));
        let first = &answers.items[0];
        assert!(first.is_accepted);
        assert_eq!(first.owner.as_ref().unwrap().user_id, None);
        assert_eq!(
            (
                answers.items[1].body.as_ref(),
                answers.items[1].owner.as_ref()
            ),
            (None, None)
        );
        let questions: Wrapper<Question> = serde_json::from_str(
            r#"{"items": [{"tags": ["rust"], "owner": {"reputation": 1, "user_id": 9,
                "user_type": "registered", "profile_image": "https://i.sstatic.net/x.png",
                "display_name": "Ann &amp; Bo", "link": "https://stackoverflow.com/users/9/ann"},
                "is_answered": false, "view_count": 3, "answer_count": 0, "score": 0,
                "last_activity_date": 1700000000, "creation_date": 1700000000,
                "question_id": 4, "link": "https://stackoverflow.com/q/4", "title": "T"}],
               "has_more": true, "quota_max": 10000, "quota_remaining": 9999}"#,
        )
        .unwrap();
        assert!(questions.has_more);
        assert_eq!(questions.items[0].body, None, "without filter=withbody");
    }
}
