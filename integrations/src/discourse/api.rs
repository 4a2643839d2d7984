//! Discourse's wire format, as its API description (`openapi.yml`) gives it: only the fields the
//! integration reads, those the description marks nullable (or leaves out of `required`) optional.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// `GET /categories.json?include_subcategories=true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoriesAnswer {
    pub category_list: CategoryList,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryList {
    pub categories: Vec<Category>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    pub id: u64,
    pub name: String,
    pub slug: String,
    #[serde(default)]
    pub read_restricted: bool,
    /// Present with `include_subcategories=true`: the subcategories, whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subcategory_list: Option<Vec<Category>>,
}

/// `GET /c/{slug}/{id}.json`: one page of a category's topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicListAnswer {
    pub topic_list: TopicList,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicList {
    pub topics: Vec<TopicSummary>,
    /// The next page (`/c/slug/id/l/latest?page=1`); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more_topics_url: Option<String>,
    #[serde(default)]
    pub per_page: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicSummary {
    pub id: u64,
    pub title: String,
    #[serde(default)]
    pub slug: Option<String>,
    pub posts_count: u64,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub category_id: Option<u64>,
}

/// `GET /t/{id}.json`: a topic, its first posts and the ids of all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicAnswer {
    pub id: u64,
    pub title: String,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub category_id: Option<u64>,
    pub post_stream: PostStream,
}

/// A topic's posts; `stream` (every post id, in order) only in `GET /t/{id}.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostStream {
    pub posts: Vec<Post>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stream: Vec<u64>,
}

/// `GET /t/{id}/posts.json?post_ids[]=…`: the posts asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostsAnswer {
    pub post_stream: PostStream,
}

/// `GET /posts.json?before=ID`: the forum's latest posts, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestPosts {
    pub latest_posts: Vec<Post>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Post {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    pub username: String,
    #[serde(default)]
    pub avatar_template: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub cooked: Option<String>,
    pub post_number: u64,
    /// 1 regular, 2 moderator action, 3 small action ("closed this topic"), 4 whisper.
    #[serde(default)]
    pub post_type: Option<u64>,
    /// The description types it `string | null`; Discourse sends a number.
    #[serde(default, deserialize_with = "number_or_string")]
    pub reply_to_post_number: Option<u64>,
    pub topic_id: u64,
    #[serde(default)]
    pub topic_slug: Option<String>,
    /// In `/posts.json` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_id: Option<u64>,
    /// Missing for a user who was deleted.
    #[serde(default)]
    pub user_id: Option<i64>,
}

/// A number, a string holding one, or `null`.
fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        Some(Raw::Number(n)) => Some(n),
        Some(Raw::Text(s)) => s.trim().parse().ok(),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The description has no examples: these answers carry its shapes as it types them —
    /// `null` where it allows one, `reply_to_post_number` as a string, fields left out that
    /// it does not require.
    #[test]
    fn the_descriptions_shapes_parse_nulls_and_missing_fields_included() {
        let latest: LatestPosts = serde_json::from_str(
            r#"{"latest_posts": [{"id": 9, "name": null, "username": "bob",
                "avatar_template": "/letter_avatar_proxy/v4/letter/b/{size}.png",
                "created_at": "2025-01-01T00:00:00.000Z", "cooked": "<p>x</p>", "post_number": 2,
                "post_type": 1, "posts_count": 2, "updated_at": "2025-01-01T00:00:00.000Z",
                "reply_count": 0, "reply_to_post_number": "1", "quote_count": 0,
                "incoming_link_count": 0, "reads": 1, "readers_count": 0, "score": 0.2,
                "yours": false, "topic_id": 5, "topic_slug": "t", "topic_title": "T",
                "topic_html_title": "T", "category_id": 4, "display_username": null,
                "primary_group_name": null, "flair_name": null, "flair_url": null,
                "flair_bg_color": null, "flair_color": null, "flair_group_id": null,
                "badges_granted": [], "version": 1, "can_edit": false, "can_delete": false,
                "can_recover": false, "can_see_hidden_post": false, "can_wiki": false,
                "user_title": null, "bookmarked": false, "raw": "x", "actions_summary": [],
                "moderator": false, "admin": false, "staff": false, "user_id": 3,
                "hidden": false, "trust_level": 1, "deleted_at": null, "user_deleted": false,
                "edit_reason": null, "can_view_edit_history": true, "wiki": false,
                "excerpt": "x", "truncated": false, "reviewable_id": null,
                "reviewable_score_count": 0, "reviewable_score_pending_count": 0,
                "post_url": "/t/t/5/2"},
               {"id": 8, "username": "gone", "created_at": "2025-01-01T00:00:00Z",
                "post_number": 1, "topic_id": 5, "reply_to_post_number": null}]}"#,
        )
        .unwrap();
        let [reply, first] = &latest.latest_posts[..] else {
            panic!("two posts")
        };
        assert_eq!(reply.reply_to_post_number, Some(1));
        assert_eq!((reply.name.as_deref(), reply.user_id), (None, Some(3)));
        assert_eq!((first.cooked.as_deref(), first.user_id), (None, None));
        let list: TopicListAnswer = serde_json::from_str(
            r#"{"users": [], "primary_groups": [], "topic_list": {"can_create_topic": false,
                "per_page": 30, "top_tags": [], "topics": [{"id": 5, "title": "T",
                "fancy_title": "T", "slug": "t", "posts_count": 2, "reply_count": 1,
                "highest_post_number": 2, "image_url": null,
                "created_at": "2025-01-01T00:00:00.000Z", "last_posted_at": null,
                "bumped": true, "bumped_at": "2025-01-01T00:00:00.000Z", "archetype": "regular",
                "unseen": false, "pinned": false, "unpinned": null, "excerpt": "x",
                "visible": true, "closed": false, "archived": false, "bookmarked": null,
                "liked": null, "views": 1, "like_count": 0, "has_summary": false,
                "last_poster_username": "bob", "category_id": 4, "pinned_globally": false,
                "featured_link": null, "posters": []}]}}"#,
        )
        .unwrap();
        assert_eq!(list.topic_list.more_topics_url, None, "the last page");
        let categories: CategoriesAnswer = serde_json::from_str(
            r#"{"category_list": {"can_create_category": false, "can_create_topic": true,
                "categories": [{"id": 4, "name": "Dev", "slug": "dev", "color": "fff",
                "subcategory_ids": [], "permission": null, "description": null}]}}"#,
        )
        .unwrap();
        assert_eq!(
            categories.category_list.categories[0].subcategory_list,
            None
        );
    }
}
