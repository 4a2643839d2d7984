//! Pagination helpers: the page token a stream carries to its next page, for the four ways APIs
//! paginate, each with loop detection.
//!
//! A stream fetches one page; its outcome's `next_page` is the token of the next one, and the
//! processor stores that page as a stream of its own (see [`crate::StreamOutcome::next_page`]).
//! These helpers build and read those tokens:
//!
//! | API style | helper | the request uses | the next token |
//! | --- | --- | --- | --- |
//! | `?page=N` | [`PageNumber`] | [`PageNumber::page`] | N+1 while a page says there is more |
//! | opaque cursor (`after=…`, `next_cursor`) | [`Cursor`] | [`Cursor::cursor`] | the cursor the page returned |
//! | `Link: <…>; rel="next"` (GitHub) | [`LinkPages`] | [`LinkPages::url`] | the `next` URL |
//! | `before=`/`after=` an id (Discord, X) | [`IdBoundary`] | [`IdBoundary::id`] | the last id of the page |
//!
//! Every `next` call checks that the API advances: a page whose items repeat the previous page
//! (APIs that ignore `page`, mocks that repeat an example), a cursor or URL that does not move
//! (or comes back to one already seen), an id boundary that does not move in its direction —
//! each ends the stream with a [`IntegrationError::Fatal`] that says so, instead of looping until
//! `max_pages_per_stream`.
//!
//! ```text
//! let pages = PageNumber::of(stream)?;
//! let query = [("page", pages.page().to_string()), ("per_page", "100".into())];
//! let items: Vec<Item> = client.get_json("/items", &query, token).await?.body;
//! let next = pages.next(items.len() == 100, items.iter().map(|i| i.id))?;
//! Ok(outcome.next_page_opt(next))
//! ```

use std::fmt::Display;

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::IntegrationError;
use crate::stream::Stream;

/// A stable 64-bit fingerprint (FNV-1a) of a page's item ids: stored in the next page's token so
/// that page can tell whether it repeats this one. Stable across processes and releases.
pub fn fingerprint<I, T>(ids: I) -> Option<u64>
where
    I: IntoIterator<Item = T>,
    T: Display,
{
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut any = false;
    for id in ids {
        any = true;
        for byte in id.to_string().bytes().chain(std::iter::once(0x1f)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    any.then_some(hash)
}

fn token_error(stream: &Stream, what: &str, e: serde_json::Error) -> IntegrationError {
    IntegrationError::fatal(format!(
        "stream `{}` has a {what} page token this integration cannot read",
        stream.identifier
    ))
    .with_source(e)
}

fn read<T: for<'de> Deserialize<'de>>(
    stream: &Stream,
    what: &str,
) -> Result<Option<T>, IntegrationError> {
    stream
        .page
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| token_error(stream, what, e))
}

fn to_value<T: Serialize>(token: &T) -> Result<Value, IntegrationError> {
    serde_json::to_value(token)
        .map_err(|e| IntegrationError::fatal("a page token does not serialize").with_source(e))
}

fn repeated(chain: &str, page: impl Display, previous: impl Display) -> IntegrationError {
    IntegrationError::fatal(format!(
        "pagination loops: page {page} of `{chain}` repeats {previous} (same items); the API \
         ignores the page it is asked for"
    ))
}

/// `?page=N` pagination (1-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageNumber {
    page: u32,
    /// The fingerprint of the previous page's items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<u64>,
    #[serde(skip)]
    chain: String,
}

impl PageNumber {
    /// The stream's page: its token, or page 1 for the first page of a stream.
    pub fn of(stream: &Stream) -> Result<Self, IntegrationError> {
        let mut token = read::<Self>(stream, "page-number")?.unwrap_or(Self {
            page: 1,
            previous: None,
            chain: String::new(),
        });
        token.chain.clone_from(&stream.chain_identifier);
        Ok(token)
    }

    /// The page to request.
    pub fn page(&self) -> u32 {
        self.page
    }

    /// The next page's token, or `None` at the end. `more` says whether the API has more (a full
    /// page, a `has_more` flag, a total); `ids` are the page's item ids. An empty page is the
    /// end; a page with the same items as the previous one is an error.
    pub fn next<I, T>(&self, more: bool, ids: I) -> Result<Option<Value>, IntegrationError>
    where
        I: IntoIterator<Item = T>,
        T: Display,
    {
        let Some(print) = fingerprint(ids) else {
            return Ok(None);
        };
        if self.previous == Some(print) {
            return Err(repeated(
                &self.chain,
                self.page,
                format!("page {}", self.page.saturating_sub(1)),
            ));
        }
        if !more {
            return Ok(None);
        }
        let next = self.page.checked_add(1).ok_or_else(|| {
            IntegrationError::fatal(format!("`{}` ran out of page numbers", self.chain))
        })?;
        to_value(&Self {
            page: next,
            previous: Some(print),
            chain: String::new(),
        })
        .map(Some)
    }
}

/// How many recent cursors a token remembers to catch a loop (A → B → A).
const CURSOR_HISTORY: usize = 8;

/// Opaque-cursor pagination (`after=…`, `next_cursor`, `pagination_token`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seen: Vec<String>,
    #[serde(skip)]
    chain: String,
}

impl Cursor {
    pub fn of(stream: &Stream) -> Result<Self, IntegrationError> {
        let mut token = read::<Self>(stream, "cursor")?.unwrap_or(Self {
            cursor: None,
            seen: Vec::new(),
            chain: String::new(),
        });
        token.chain.clone_from(&stream.chain_identifier);
        Ok(token)
    }

    /// The cursor to send; `None` on the first page.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The next page's token from the cursor the page returned (`None` or empty: the end). A
    /// cursor equal to the current one or to a recent one is an error.
    pub fn next(&self, next_cursor: Option<&str>) -> Result<Option<Value>, IntegrationError> {
        let Some(next) = next_cursor.filter(|c| !c.is_empty()) else {
            return Ok(None);
        };
        if self.cursor.as_deref() == Some(next) || self.seen.iter().any(|c| c == next) {
            return Err(IntegrationError::fatal(format!(
                "pagination loops: the cursor of `{}` does not advance (it returned a cursor \
                 already followed)",
                self.chain
            )));
        }
        let mut seen = self.seen.clone();
        seen.extend(self.cursor.clone());
        if seen.len() > CURSOR_HISTORY {
            seen.drain(..seen.len() - CURSOR_HISTORY);
        }
        to_value(&Self {
            cursor: Some(next.to_owned()),
            seen,
            chain: String::new(),
        })
        .map(Some)
    }
}

/// `Link` header pagination: the next page is the URL of `rel="next"` (GitHub, GitLab,
/// Discourse's `more_*_url` read the same way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPages {
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<u64>,
    #[serde(skip)]
    chain: String,
}

impl LinkPages {
    pub fn of(stream: &Stream) -> Result<Self, IntegrationError> {
        let mut token = read::<Self>(stream, "link")?.unwrap_or(Self {
            url: None,
            previous: None,
            chain: String::new(),
        });
        token.chain.clone_from(&stream.chain_identifier);
        Ok(token)
    }

    /// The absolute URL to fetch (with [`super::HttpClient::get_json_url`]); `None` on the first
    /// page, which the integration requests by path.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// The next page's token from the response's `Link` header.
    pub fn next<I, T>(&self, headers: &HeaderMap, ids: I) -> Result<Option<Value>, IntegrationError>
    where
        I: IntoIterator<Item = T>,
        T: Display,
    {
        let print = fingerprint(ids);
        if print.is_some() && print == self.previous {
            return Err(repeated(
                &self.chain,
                self.url.as_deref().unwrap_or("1"),
                "the previous page",
            ));
        }
        let Some(next) = next_link(headers) else {
            return Ok(None);
        };
        if self.url.as_deref() == Some(next.as_str()) {
            return Err(IntegrationError::fatal(format!(
                "pagination loops: the `next` link of `{}` points at the page just fetched",
                self.chain
            )));
        }
        to_value(&Self {
            url: Some(next),
            previous: print,
            chain: String::new(),
        })
        .map(Some)
    }
}

/// The URL of `rel="next"` in a response's `Link` header(s) (RFC 8288), if any.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    link(headers, "next")
}

/// The URL of the link with relation `rel` (`next`, `last`, `prev`, `first`) in a response's
/// `Link` header(s) (RFC 8288), if any.
pub fn link(headers: &HeaderMap, rel: &str) -> Option<String> {
    headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_links)
        .find_map(|link| {
            let (target, params) = link.split_once('>')?;
            let target = target.trim().strip_prefix('<')?;
            let matches = params.split(';').any(|p| {
                let Some((name, value)) = p.split_once('=') else {
                    return false;
                };
                name.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case(rel))
            });
            matches.then(|| target.to_owned())
        })
}

/// Splits a `Link` value at the commas between links (not those inside `<…>` or quotes).
fn split_links(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut in_url, mut in_quote, mut start) = (false, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            '<' if !in_quote => in_url = true,
            '>' if !in_quote => in_url = false,
            '"' if !in_url => in_quote = !in_quote,
            ',' if !in_url && !in_quote => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// Which way an id boundary pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Newest first: the next page is `before` (or `max_id`) the smallest id of this one.
    Before,
    /// Oldest first: the next page is `after` (or `since_id`) the largest id of this one.
    After,
}

/// Pagination by an id boundary: `before=ID` / `after=ID` (Discord), `max_id` / `since_id` (X).
/// Ids are integers (snowflakes fit in `u64`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdBoundary {
    direction: Direction,
    id: Option<u64>,
    #[serde(skip)]
    chain: String,
}

impl IdBoundary {
    /// The stream's boundary; `start` for the first page (`None`: from the newest / oldest).
    pub fn of(
        stream: &Stream,
        direction: Direction,
        start: Option<u64>,
    ) -> Result<Self, IntegrationError> {
        let mut token = read::<Self>(stream, "id-boundary")?.unwrap_or(Self {
            direction,
            id: start,
            chain: String::new(),
        });
        token.chain.clone_from(&stream.chain_identifier);
        Ok(token)
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The id to send as `before` / `after`; `None` for the first page without a start.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// The next page's token from the page's ids, or `None` at the end (an empty page, or `more`
    /// false). The boundary must move in its direction.
    pub fn next(
        &self,
        more: bool,
        ids: impl IntoIterator<Item = u64>,
    ) -> Result<Option<Value>, IntegrationError> {
        let ids: Vec<u64> = ids.into_iter().collect();
        let edge = match self.direction {
            Direction::Before => ids.iter().min(),
            Direction::After => ids.iter().max(),
        };
        let Some(&edge) = edge else {
            return Ok(None);
        };
        let advances = match (self.direction, self.id) {
            (_, None) => true,
            (Direction::Before, Some(current)) => edge < current,
            (Direction::After, Some(current)) => edge > current,
        };
        if !advances {
            return Err(IntegrationError::fatal(format!(
                "pagination loops: the {:?} boundary of `{}` does not advance (id {edge} after \
                 boundary {})",
                self.direction,
                self.chain,
                self.id.unwrap_or_default()
            )));
        }
        if !more {
            return Ok(None);
        }
        to_value(&Self {
            direction: self.direction,
            id: Some(edge),
            chain: String::new(),
        })
        .map(Some)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::ErrorKind;
    use reqwest::header::HeaderValue;
    use serde_json::json;
    use uuid::Uuid;

    fn stream(page: Option<Value>) -> Stream {
        Stream {
            id: Uuid::nil(),
            run_id: Uuid::nil(),
            parent_id: None,
            identifier: "items".into(),
            chain_identifier: "items".into(),
            source: "items".into(),
            data: json!({}),
            page_number: if page.is_some() { 2 } else { 1 },
            page,
            retries: 0,
        }
    }

    #[test]
    fn page_numbers_advance_while_there_is_more() {
        let first = PageNumber::of(&stream(None)).unwrap();
        assert_eq!(first.page(), 1);
        let next = first.next(true, [1, 2, 3]).unwrap().unwrap();
        let second = PageNumber::of(&stream(Some(next))).unwrap();
        assert_eq!(second.page(), 2);
        assert_eq!(
            second.next(false, [4, 5]).unwrap(),
            None,
            "not full: the end"
        );
        assert_eq!(
            second.next(true, Vec::<u32>::new()).unwrap(),
            None,
            "empty: the end"
        );
    }

    #[test]
    fn a_page_that_repeats_the_previous_one_is_an_error() {
        let first = PageNumber::of(&stream(None)).unwrap();
        let next = first.next(true, ["a", "b"]).unwrap().unwrap();
        let second = PageNumber::of(&stream(Some(next))).unwrap();
        let err = second.next(true, ["a", "b"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Fatal);
        assert_eq!(
            err.to_string(),
            "pagination loops: page 2 of `items` repeats page 1 (same items); the API ignores \
             the page it is asked for"
        );
    }

    #[test]
    fn a_cursor_must_advance() {
        let first = Cursor::of(&stream(None)).unwrap();
        assert_eq!(first.cursor(), None);
        let b = first.next(Some("B")).unwrap().unwrap();
        let at_b = Cursor::of(&stream(Some(b))).unwrap();
        assert_eq!(at_b.cursor(), Some("B"));
        assert!(
            at_b.next(Some("B"))
                .unwrap_err()
                .to_string()
                .contains("does not advance")
        );
        let c = at_b.next(Some("C")).unwrap().unwrap();
        let at_c = Cursor::of(&stream(Some(c))).unwrap();
        assert!(
            at_c.next(Some("B")).is_err(),
            "back to a cursor already followed"
        );
        assert_eq!(at_c.next(None).unwrap(), None);
        assert_eq!(at_c.next(Some("")).unwrap(), None);
    }

    #[test]
    fn link_headers_in_every_shape() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static(
                r#"<https://api.github.com/repositories/1/issues?page=2>; rel="next", <https://api.github.com/repositories/1/issues?page=9>; rel="last""#,
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/repositories/1/issues?page=2")
        );
        assert_eq!(
            link(&h, "last").as_deref(),
            Some("https://api.github.com/repositories/1/issues?page=9")
        );
        assert_eq!(link(&h, "prev"), None);
        let mut h = HeaderMap::new();
        h.append(
            "Link",
            HeaderValue::from_static(r#"<https://x/a?p=1>; rel="prev first""#),
        );
        h.append(
            "Link",
            HeaderValue::from_static(r#"<https://x/a?q=1,2&p=3>;REL=NEXT"#),
        );
        assert_eq!(next_link(&h).as_deref(), Some("https://x/a?q=1,2&p=3"));
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static(r#"<https://x/a?p=1>; rel="last""#),
        );
        assert_eq!(next_link(&h), None);
        h.insert(
            "link",
            HeaderValue::from_static("garbage, <no-close; rel=next"),
        );
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn link_pages_detect_loops() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static(r#"<https://x/a?page=2>; rel="next""#),
        );
        let first = LinkPages::of(&stream(None)).unwrap();
        let next = first.next(&h, [1, 2]).unwrap().unwrap();
        let second = LinkPages::of(&stream(Some(next))).unwrap();
        assert_eq!(second.url(), Some("https://x/a?page=2"));
        let err = second.next(&h, [3, 4]).unwrap_err();
        assert!(
            err.to_string().contains("points at the page just fetched"),
            "{err}"
        );
        let err = second.next(&HeaderMap::new(), [1, 2]).unwrap_err();
        assert!(
            err.to_string().contains("repeats the previous page"),
            "{err}"
        );
        assert_eq!(second.next(&HeaderMap::new(), [3, 4]).unwrap(), None);
    }

    #[test]
    fn id_boundaries_move_in_their_direction() {
        let before = IdBoundary::of(&stream(None), Direction::Before, None).unwrap();
        let next = before.next(true, [90, 80, 70]).unwrap().unwrap();
        let second = IdBoundary::of(&stream(Some(next)), Direction::Before, None).unwrap();
        assert_eq!(second.id(), Some(70));
        assert!(
            second.next(true, [75, 72]).is_err(),
            "ids above the boundary"
        );
        assert_eq!(second.next(false, [60]).unwrap(), None);

        let after = IdBoundary::of(&stream(None), Direction::After, Some(100)).unwrap();
        assert_eq!(after.id(), Some(100));
        let next = after.next(true, [101, 150]).unwrap().unwrap();
        let second = IdBoundary::of(&stream(Some(next)), Direction::After, Some(100)).unwrap();
        assert_eq!(second.id(), Some(150));
        assert!(second.next(true, [150]).is_err());
        assert_eq!(second.next(true, []).unwrap(), None);
    }

    const PINNED_A: u64 = 620_345_593_008_815_561;

    #[test]
    fn fingerprints_are_stable_and_order_sensitive() {
        assert_eq!(fingerprint([1, 2]), fingerprint(["1", "2"]));
        assert_ne!(fingerprint([1, 2]), fingerprint([2, 1]));
        assert_ne!(fingerprint(["12"]), fingerprint(["1", "2"]));
        assert_eq!(fingerprint(Vec::<u8>::new()), None);
        // pinned: tokens stored by one release are read by the next
        assert_eq!(fingerprint(["a"]), Some(PINNED_A));
    }
}
