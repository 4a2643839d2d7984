//! A post's comment tree: walked depth first into `comment` activities, its collapsed branches
//! (`more` things) gathered into batched `morechildren` requests and its "continue this thread"
//! links into sub-thread reads.

use super::api::{Comment, CommentThing};

/// The largest number of comment ids one `morechildren` request takes.
pub const MORE_BATCH: usize = 100;

/// What a tree (or a `morechildren` answer) holds: its comments, the ids of collapsed comments
/// still to fetch, and the comments whose replies continue in a thread of their own.
#[derive(Debug, Default, PartialEq)]
pub struct Walked<'a> {
    pub comments: Vec<&'a Comment>,
    pub collapsed: Vec<String>,
    pub continued: Vec<String>,
}

impl<'a> Walked<'a> {
    /// Walks `things` and their replies.
    pub fn of(things: &'a [CommentThing]) -> Self {
        let mut walked = Self::default();
        walked.walk(things);
        walked
    }

    fn walk(&mut self, things: &'a [CommentThing]) {
        for thing in things {
            match thing {
                CommentThing::Comment(comment) => {
                    self.comments.push(comment);
                    self.walk(&comment.replies);
                }
                CommentThing::More(more) if more.children.is_empty() => {
                    if let Some(parent) = more.parent_id.strip_prefix("t1_") {
                        self.continued.push(parent.to_owned());
                    }
                }
                CommentThing::More(more) => self.collapsed.extend(more.children.iter().cloned()),
            }
        }
    }

    /// The collapsed ids in batches of at most [`MORE_BATCH`], each once, in order.
    pub fn batches(&self) -> Vec<Vec<String>> {
        let mut seen = std::collections::HashSet::new();
        let ids: Vec<String> = self
            .collapsed
            .iter()
            .filter(|id| seen.insert(id.as_str()))
            .cloned()
            .collect();
        ids.chunks(MORE_BATCH).map(<[String]>::to_vec).collect()
    }
}

/// The source id of what a `parent_id` fullname names: `t3_x` → `post:x`, `t1_y` →
/// `comment:y`.
pub fn parent_source_id(fullname: &str) -> Option<String> {
    if let Some(post) = fullname.strip_prefix("t3_") {
        Some(format!("post:{post}"))
    } else {
        fullname
            .strip_prefix("t1_")
            .map(|comment| format!("comment:{comment}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::reddit::api::More;

    fn more(parent: &str, children: &[&str]) -> CommentThing {
        CommentThing::More(More {
            count: children.len() as u64,
            parent_id: parent.into(),
            children: children.iter().map(|c| (*c).to_owned()).collect(),
        })
    }

    #[test]
    fn collapsed_ids_are_batched_by_a_hundred_once_each() {
        let ids: Vec<String> = (0..250).map(|i| format!("c{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let things = vec![
            more("t3_p", &refs[..200]),
            more("t1_c3", &refs[150..]),
            more("t1_c9", &[]),
        ];
        let walked = Walked::of(&things);
        let batches = walked.batches();
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        assert_eq!(batches[2][49], "c249");
        assert_eq!(walked.continued, ["c9"]);
    }

    #[test]
    fn parents_are_posts_or_comments() {
        assert_eq!(parent_source_id("t3_abc").as_deref(), Some("post:abc"));
        assert_eq!(parent_source_id("t1_k2").as_deref(), Some("comment:k2"));
        assert_eq!(parent_source_id("t5_x"), None);
    }
}
