//! Which configured term an item is filed under. An item can be found by several searches (and a
//! comment both by a search and in its story's thread); its channel must not depend on which of
//! them wrote it last, so it is derived from the item itself: the first configured term (keywords,
//! then URLs, in the settings' order) that its text mentions, else the given fallback.

use super::api::Hit;

/// The channel of `hit`: the first of `terms` its title, link or text mentions (every word of a
/// keyword, case-insensitively; a URL as written), else `fallback`.
pub fn channel_of(hit: &Hit, terms: &[&str], fallback: &str) -> String {
    let text = [
        hit.title.as_deref(),
        hit.url.as_deref(),
        hit.story_text.as_deref(),
        hit.comment_text.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("\n")
    .to_lowercase()
    // HN escapes the `/` of links in texts
    .replace("&#x2f;", "/");
    terms
        .iter()
        .find(|term| mentions(&text, term))
        .map_or_else(|| fallback.to_owned(), |term| (*term).to_owned())
}

fn mentions(text: &str, term: &str) -> bool {
    let words: Vec<String> = term
        .split_whitespace()
        .map(|w| w.trim_matches('"').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect();
    !words.is_empty() && words.iter().all(|w| text.contains(w.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(title: Option<&str>, comment: Option<&str>) -> Hit {
        Hit {
            object_id: 1,
            created_at_i: 0,
            created_at: None,
            author: Some("pg".into()),
            title: title.map(Into::into),
            url: None,
            story_text: None,
            comment_text: comment.map(Into::into),
            points: None,
            num_comments: None,
            story_id: None,
            story_title: None,
            story_url: None,
            parent_id: None,
            tags: Vec::new(),
        }
    }

    #[test]
    fn the_first_term_mentioned_wins_whatever_search_found_the_item() {
        let terms = ["rust", "\"postgres tuning\"", "github.com/acme/widget"];
        let both = hit(Some("Rust and PostgreSQL tuning"), None);
        assert_eq!(channel_of(&both, &terms, "github.com/acme/widget"), "rust");
        let phrase = hit(None, Some("<p>Postgres needs tuning"));
        assert_eq!(channel_of(&phrase, &terms, "rust"), "\"postgres tuning\"");
        let link = hit(
            None,
            Some("see https:&#x2F;&#x2F;github.com&#x2F;acme&#x2F;widget"),
        );
        assert_eq!(channel_of(&link, &terms, "rust"), "github.com/acme/widget");
        let neither = hit(Some("Nothing here"), None);
        assert_eq!(channel_of(&neither, &terms, "story's"), "story's");
    }
}
