//! What a Discourse post becomes: a `topic_created` (the topic's first post) or a
//! `post_created` activity, and its author a member.

use serde_json::json;
use tributary::{Activity, Member};

use super::api::Post;

/// Discourse's post types that are not someone writing: moderator actions and small actions.
const NOT_WRITTEN: [u64; 2] = [2, 3];
/// The avatar size asked for in `avatar_template`.
const AVATAR_SIZE: &str = "144";

/// Where the forum's pages live.
pub(super) struct Site(String);

impl Site {
    pub(super) fn new(base_url: &str) -> Self {
        Self(base_url.trim_end_matches('/').to_owned())
    }

    /// An absolute URL for a path the forum gave (`/u/x`, `//cdn/…`, or already absolute).
    fn absolute(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else if let Some(rest) = path.strip_prefix("//") {
            format!("https://{rest}")
        } else {
            format!("{}{path}", self.0)
        }
    }
}

/// The source id of a post: its topic's for the first post, else its number in the topic.
pub(super) fn source_id(topic_id: u64, post_number: u64) -> String {
    if post_number <= 1 {
        format!("topic:{topic_id}")
    } else {
        format!("post:{topic_id}:{post_number}")
    }
}

pub(super) fn member(post: &Post, user_id: i64, site: &Site) -> Member {
    let avatar = post
        .avatar_template
        .as_deref()
        .map(|t| site.absolute(&t.replace("{size}", AVATAR_SIZE)));
    Member::new(user_id.to_string(), post.username.clone())
        .display_name(post.name.as_ref().filter(|n| !n.trim().is_empty()))
        .url(site.absolute(&format!("/u/{}", post.username)))
        .attributes(json!({ "avatar_url": avatar }))
}

/// The activity of a post, `None` for what nobody wrote (a small action) and for posts whose
/// author's account is gone.
pub(super) fn post_activity(
    post: &Post,
    title: &str,
    channel: &str,
    site: &Site,
) -> Option<Activity> {
    if post.post_type.is_some_and(|t| NOT_WRITTEN.contains(&t)) {
        return None;
    }
    let user_id = post.user_id?;
    let slug = post.topic_slug.as_deref().unwrap_or("-");
    let url = site.absolute(&format!("/t/{slug}/{}/{}", post.topic_id, post.post_number));
    let attributes = json!({
        "post_id": post.id,
        "topic_id": post.topic_id,
        "post_number": post.post_number,
    });
    let id = source_id(post.topic_id, post.post_number);
    let activity = if post.post_number <= 1 {
        Activity::new(
            id,
            "topic_created",
            post.created_at,
            member(post, user_id, site),
        )
        .title(title)
    } else {
        let parent = source_id(post.topic_id, post.reply_to_post_number.unwrap_or(1));
        Activity::new(
            id,
            "post_created",
            post.created_at,
            member(post, user_id, site),
        )
        .parent(parent)
    };
    Some(
        activity
            .channel(channel)
            .body(&post.cooked)
            .url(url)
            .attributes(attributes),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn post(number: u64, reply_to: Option<u64>) -> Post {
        Post {
            id: 900 + number,
            name: Some(String::new()),
            username: "alice".into(),
            avatar_template: Some("/user_avatar/forum.test/alice/{size}/3_2.png".into()),
            created_at: "2025-01-01T00:00:00Z".parse().unwrap(),
            cooked: Some("<p>hi</p>".into()),
            post_number: number,
            post_type: Some(1),
            reply_to_post_number: reply_to,
            topic_id: 7,
            topic_slug: Some("hello".into()),
            topic_title: None,
            category_id: Some(1),
            user_id: Some(42),
        }
    }

    #[test]
    fn first_posts_are_topics_replies_link_to_what_they_answer() {
        let site = Site::new("https://forum.test/");
        let topic = post_activity(&post(1, None), "Hello", "general", &site).unwrap();
        assert_eq!(
            (topic.source_id.as_str(), topic.activity_type.as_str()),
            ("topic:7", "topic_created")
        );
        assert_eq!(topic.title.as_deref(), Some("Hello"));
        assert_eq!(topic.url.as_deref(), Some("https://forum.test/t/hello/7/1"));
        let reply = post_activity(&post(5, Some(3)), "Hello", "general", &site).unwrap();
        assert_eq!(reply.source_id, "post:7:5");
        assert_eq!(reply.source_parent_id.as_deref(), Some("post:7:3"));
        assert_eq!(reply.attributes["post_id"], 905);
        let to_topic = post_activity(&post(2, Some(1)), "Hello", "general", &site).unwrap();
        assert_eq!(to_topic.source_parent_id.as_deref(), Some("topic:7"));
        let plain = post_activity(&post(3, None), "Hello", "general", &site).unwrap();
        assert_eq!(plain.source_parent_id.as_deref(), Some("topic:7"));
        // the member: Discourse's user id, an empty name is no name, an absolute avatar
        assert_eq!(reply.member.source_id, "42");
        assert_eq!(reply.member.display_name, None);
        assert_eq!(
            reply.member.url.as_deref(),
            Some("https://forum.test/u/alice")
        );
        assert_eq!(
            reply.member.attributes["avatar_url"],
            "https://forum.test/user_avatar/forum.test/alice/144/3_2.png"
        );
    }

    #[test]
    fn small_actions_and_vanished_authors_are_no_activity() {
        let site = Site::new("https://forum.test");
        let mut closed = post(4, None);
        closed.post_type = Some(3);
        assert!(post_activity(&closed, "t", "c", &site).is_none());
        let mut gone = post(4, None);
        gone.user_id = None;
        assert!(post_activity(&gone, "t", "c", &site).is_none());
    }
}
