//! One page of one of a repository's lists: which request it is, and what comes after it (the
//! other pages fanned out, the next link, or the page before it).

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary::http::{HttpClient, HttpResponse, LinkPages, link};
use tributary::{IntegrationError, Secret, Stream};

use super::api::{Issue, IssueComment, Repository, ReviewComment, Stargazer};
use super::settings::Source;

/// A list's `rel="last"` naming more pages than this is not believed.
const MAX_PAGES: u32 = 10_000;

/// The repository a list belongs to, as GitHub named it when the run started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRef {
    pub id: u64,
    /// `owner/name` as GitHub spells it: the lists' paths and the activities' channel.
    pub full_name: String,
}

impl RepoRef {
    pub fn of(repo: &Repository) -> Self {
        Self {
            id: repo.id,
            full_name: repo.full_name.clone(),
        }
    }
}

/// Which page of a list a stream fetches, and how it goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ListPage {
    /// The first page, oldest first; its `rel="last"` fans the other pages out.
    First,
    /// Page `page` of a fanned-out list; the `last` one follows `rel="next"`.
    Fanned { page: u32, last: bool },
    /// Newest first, following `rel="next"` while pages are within the window (forks in a check).
    Newest,
    /// Oldest first, read backwards from `page` while pages are within the window (stargazers in
    /// a check). The `newest` page, where the repository's count put the end, also follows
    /// `rel="next"` (stars given since the count was read).
    Backward { page: u32, newest: bool },
}

impl ListPage {
    /// Where a run starts reading `source` of `repo`.
    pub fn first(
        source: Source,
        repo: &Repository,
        per_page: u32,
        since: Option<DateTime<Utc>>,
    ) -> Self {
        match (since, source) {
            (None, _) => Self::First,
            (Some(_), Source::Forks) => Self::Newest,
            (Some(_), Source::Stars) => {
                let pages = repo.stargazers_count.div_ceil(u64::from(per_page.max(1)));
                Self::Backward {
                    page: u32::try_from(pages)
                        .unwrap_or(MAX_PAGES)
                        .clamp(1, MAX_PAGES),
                    newest: true,
                }
            }
            (Some(_), _) => Self::First,
        }
    }

    /// The page number it asks for (`None`: the first page, asked for without one).
    pub fn number(&self) -> Option<u32> {
        match self {
            Self::First | Self::Newest => None,
            Self::Fanned { page, .. } | Self::Backward { page, .. } => Some(*page),
        }
    }
}

/// The items of one page.
#[derive(Debug, Clone)]
pub enum Items {
    Stars(Vec<Stargazer>),
    Forks(Vec<Repository>),
    Issues(Vec<Issue>),
    Comments(Vec<IssueComment>),
    ReviewComments(Vec<ReviewComment>),
}

impl Items {
    /// GitHub's ids of the items, in order: what tells a repeated page.
    fn ids(&self) -> Vec<u64> {
        match self {
            Self::Stars(v) => v.iter().map(|s| s.user.id).collect(),
            Self::Forks(v) => v.iter().map(|f| f.id).collect(),
            Self::Issues(v) => v.iter().map(|i| i.id).collect(),
            Self::Comments(v) => v.iter().map(|c| c.id).collect(),
            Self::ReviewComments(v) => v.iter().map(|c| c.id).collect(),
        }
    }

    /// When the oldest item of the page happened (stars and forks: the lists read by window).
    fn oldest(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Stars(v) => v.iter().map(|s| s.starred_at).min(),
            Self::Forks(v) => v.iter().filter_map(|f| f.created_at).min(),
            Self::Issues(v) => v.iter().map(|i| i.created_at).min(),
            Self::Comments(v) => v.iter().map(|c| c.created_at).min(),
            Self::ReviewComments(v) => v.iter().map(|c| c.created_at).min(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::Stars(v) => v.is_empty(),
            Self::Forks(v) => v.is_empty(),
            Self::Issues(v) => v.is_empty(),
            Self::Comments(v) => v.is_empty(),
            Self::ReviewComments(v) => v.is_empty(),
        }
    }
}

/// A page fetched, and what follows it.
#[derive(Debug)]
pub struct Fetched {
    pub items: Items,
    /// Pages to fetch as streams of their own.
    pub more_pages: Vec<ListPage>,
    /// This stream's next page (a `LinkPages` token).
    pub next: Option<Value>,
}

/// The request for one page of `source` of `repo`.
pub struct Request<'a> {
    pub client: &'a HttpClient,
    pub token: Option<&'a Secret>,
    pub repo: &'a RepoRef,
    pub source: Source,
    pub per_page: u32,
    pub since: Option<DateTime<Utc>>,
}

impl Request<'_> {
    /// Fetches the stream's page (its `next` link when it is a next page) and decides what
    /// follows.
    pub async fn fetch(
        &self,
        stream: &Stream,
        page: &ListPage,
    ) -> Result<Fetched, IntegrationError> {
        let links = LinkPages::of(stream)?;
        let (items, headers) = match self.source {
            Source::Stars => self.get(&links, page, Items::Stars).await?,
            Source::Forks => self.get(&links, page, Items::Forks).await?,
            Source::Issues => self.get(&links, page, Items::Issues).await?,
            Source::Comments => self.get(&links, page, Items::Comments).await?,
            Source::ReviewComments => self.get(&links, page, Items::ReviewComments).await?,
        };
        let following_links = links.url().is_some();
        let within_window = self
            .since
            .is_none_or(|since| items.oldest().is_none_or(|oldest| oldest >= since));
        let next_link = || links.next(&headers, items.ids());
        let (more_pages, next) = match *page {
            ListPage::First if !following_links => match last_page(&headers)? {
                Some(last) => (fan_out(last), None),
                None => (Vec::new(), next_link()?),
            },
            ListPage::First | ListPage::Fanned { last: true, .. } => (Vec::new(), next_link()?),
            ListPage::Fanned { last: false, .. } => (Vec::new(), None),
            ListPage::Newest if within_window => (Vec::new(), next_link()?),
            ListPage::Newest => (Vec::new(), None),
            ListPage::Backward { page, newest } => {
                let before = (!following_links && page > 1 && (within_window || items.is_empty()))
                    .then_some(ListPage::Backward {
                        page: page - 1,
                        newest: false,
                    });
                let next = if newest { next_link()? } else { None };
                (before.into_iter().collect(), next)
            }
        };
        Ok(Fetched {
            items,
            more_pages,
            next,
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        links: &LinkPages,
        page: &ListPage,
        wrap: fn(T) -> Items,
    ) -> Result<(Items, reqwest::header::HeaderMap), IntegrationError> {
        let accept: &[(&str, &str)] = match self.source {
            Source::Stars => &[("Accept", "application/vnd.github.star+json")],
            _ => &[],
        };
        let response: HttpResponse<T> = match links.url() {
            Some(url) => {
                self.client
                    .get_json_url_with(url, accept, self.token)
                    .await?
            }
            None => {
                let path = format!("/repos/{}{}", self.repo.full_name, self.source.path());
                self.client
                    .get_json_with(&path, &self.query(page), accept, self.token)
                    .await?
            }
        };
        Ok((wrap(response.body), response.headers))
    }

    /// The query of a page asked for by number: the largest pages, oldest first (so that pages do
    /// not shift as items are added), `since` where GitHub filters by it.
    fn query(&self, page: &ListPage) -> Vec<(&'static str, String)> {
        let mut query = vec![("per_page", self.per_page.to_string())];
        match self.source {
            Source::Stars => {}
            Source::Forks => {
                let sort = if *page == ListPage::Newest {
                    "newest"
                } else {
                    "oldest"
                };
                query.push(("sort", sort.to_owned()));
            }
            Source::Issues | Source::Comments | Source::ReviewComments => {
                if self.source == Source::Issues {
                    query.push(("state", "all".to_owned()));
                }
                query.push(("sort", "created".to_owned()));
                query.push(("direction", "asc".to_owned()));
                if let Some(since) = self.since {
                    query.push((
                        "since",
                        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    ));
                }
            }
        }
        if let Some(number) = page.number() {
            query.push(("page", number.to_string()));
        }
        query
    }
}

/// Pages 2..=last as streams of their own.
fn fan_out(last: u32) -> Vec<ListPage> {
    (2..=last)
        .map(|page| ListPage::Fanned {
            page,
            last: page == last,
        })
        .collect()
}

/// The page number of `rel="last"`, if the answer has one.
fn last_page(headers: &reqwest::header::HeaderMap) -> Result<Option<u32>, IntegrationError> {
    let Some(url) = link(headers, "last") else {
        return Ok(None);
    };
    let page = reqwest::Url::parse(&url)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "page")
                .and_then(|(_, v)| v.parse::<u32>().ok())
        })
        .filter(|page| (1..=MAX_PAGES).contains(page));
    match page {
        Some(page) => Ok(Some(page)),
        None => Err(IntegrationError::fatal(format!(
            "the `last` link of a list names no page between 1 and {MAX_PAGES}: `{}`",
            url.split('?').nth(1).unwrap_or_default()
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn links(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("link", HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn the_last_link_fans_the_other_pages_out() {
        let h = links(
            r#"<https://ghe.example.com/api/v3/repos/a/b/issues?per_page=100&page=2>; rel="next", <https://ghe.example.com/api/v3/repos/a/b/issues?per_page=100&page=4>; rel="last""#,
        );
        assert_eq!(last_page(&h).unwrap(), Some(4));
        assert_eq!(
            fan_out(4),
            vec![
                ListPage::Fanned {
                    page: 2,
                    last: false
                },
                ListPage::Fanned {
                    page: 3,
                    last: false
                },
                ListPage::Fanned {
                    page: 4,
                    last: true
                },
            ]
        );
        assert_eq!(last_page(&HeaderMap::new()).unwrap(), None);
        let absurd = links(r#"<https://x/a?page=99999999>; rel="last""#);
        assert!(
            last_page(&absurd)
                .unwrap_err()
                .to_string()
                .contains("names no page between 1 and 10000: `page=99999999`")
        );
    }

    fn repo(stars: u64) -> Repository {
        serde_json::from_value(serde_json::json!({
            "id": 1, "full_name": "a/b", "owner": {"id": 2, "login": "a"},
            "stargazers_count": stars
        }))
        .unwrap()
    }

    #[test]
    fn a_check_reads_stars_backwards_from_the_last_page_and_forks_newest_first() {
        let since = DateTime::from_timestamp(1_800_000_000, 0);
        assert_eq!(
            ListPage::first(Source::Stars, &repo(250), 100, since),
            ListPage::Backward {
                page: 3,
                newest: true
            }
        );
        assert_eq!(
            ListPage::first(Source::Stars, &repo(0), 100, since),
            ListPage::Backward {
                page: 1,
                newest: true
            }
        );
        assert_eq!(
            ListPage::first(Source::Forks, &repo(0), 100, since),
            ListPage::Newest
        );
        assert_eq!(
            ListPage::first(Source::Issues, &repo(0), 100, since),
            ListPage::First
        );
        assert_eq!(
            ListPage::first(Source::Stars, &repo(250), 100, None),
            ListPage::First
        );
    }
}
