//! Which of a credential's budgets a request draws on — its *resource* — as the platform says:
//! GitHub's `x-ratelimit-resource` (`core`, `search`, `graphql`…), Discord's `x-ratelimit-bucket`
//! (with the route's major parameter: two channels of one bucket have a budget each), else the
//! toolkit's route bucket when the client has [`super::RouteBuckets`], else `""` (one budget per
//! credential, as most platforms have).
//!
//! A resource is only known from an answer, but a shared budget's turn is taken before the
//! request: each client learns, per credential and route, the resource its answers named, and the
//! next request of that route takes its turn from that budget. A route not answered yet in this
//! process takes it from the credential's only resource when it has one (learnt here, or else
//! the only budget stored for it); otherwise its first request goes without a shared turn (the
//! process's own pacing still holds) and its answer is recorded all the same.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use reqwest::header::HeaderMap;

use super::buckets::RouteBuckets;

/// Routes remembered per client; past that the memory starts again.
const MAX_ROUTES: usize = 4096;

/// A request's route as far as budgets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BudgetRoute {
    /// The route bucket's key (its major parameter kept, minor ids replaced) with route buckets,
    /// else the path with its numeric segments replaced by `{id}`.
    pub key: String,
    /// The major parameter (`channels/1`), with route buckets; else empty.
    pub major: String,
    pub bucketed: bool,
}

impl BudgetRoute {
    pub(crate) fn of(path: &str, buckets: Option<&RouteBuckets>) -> Self {
        match buckets {
            Some(buckets) => {
                let route = buckets.route(path);
                Self {
                    key: route.key,
                    major: route.major,
                    bucketed: true,
                }
            }
            None => Self {
                key: path
                    .split('/')
                    .map(|s| {
                        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                            "{id}"
                        } else {
                            s
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("/"),
                major: String::new(),
                bucketed: false,
            },
        }
    }

    /// The resource an answer names: its `x-ratelimit-resource`, else its `x-ratelimit-bucket`
    /// (with the major parameter), if any.
    pub(crate) fn named_by(&self, headers: &HeaderMap) -> Option<String> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        header("x-ratelimit-resource").or_else(|| {
            header("x-ratelimit-bucket").map(|hash| {
                if self.major.is_empty() {
                    hash
                } else {
                    format!("{hash}:{}", self.major)
                }
            })
        })
    }

    /// The resource when no answer named one: the route bucket, or the credential's one budget.
    pub(crate) fn unnamed(&self) -> String {
        if self.bucketed {
            self.key.clone()
        } else {
            String::new()
        }
    }
}

/// What a client knows of a route's resource before its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Known {
    /// Learnt from an answer of this route, or the credential's only resource learnt so far.
    Resource(String),
    /// Nothing learnt for this credential yet: the stored budgets may tell.
    Nothing,
    /// The credential has several resources and this route was not answered yet.
    Unknown,
}

/// The resources a client learnt, per credential fingerprint and route.
#[derive(Debug, Default)]
pub(crate) struct Resources {
    learnt: Mutex<HashMap<String, HashMap<String, String>>>,
}

impl Resources {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, HashMap<String, String>>> {
        self.learnt.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn known(&self, credential: &str, route: &BudgetRoute) -> Known {
        let learnt = self.lock();
        let Some(routes) = learnt.get(credential) else {
            return if route.bucketed {
                Known::Unknown
            } else {
                Known::Nothing
            };
        };
        if let Some(resource) = routes.get(&route.key) {
            return Known::Resource(resource.clone());
        }
        if route.bucketed {
            // routes of different buckets never share one
            return Known::Unknown;
        }
        let mut resources = routes.values();
        match resources.next() {
            Some(first) if resources.all(|r| r == first) => Known::Resource(first.clone()),
            _ => Known::Unknown,
        }
    }

    pub(crate) fn learn(&self, credential: &str, route: &BudgetRoute, resource: &str) {
        let mut learnt = self.lock();
        if learnt.values().map(HashMap::len).sum::<usize>() >= MAX_ROUTES {
            learnt.clear();
        }
        learnt
            .entry(credential.to_owned())
            .or_default()
            .insert(route.key.clone(), resource.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Route;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, reqwest::header::HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_platform_names_the_resource_else_the_route_bucket_else_one_budget() {
        let plain = BudgetRoute::of("/repos/acme/widget/issues/12/comments", None);
        assert_eq!(plain.key, "/repos/acme/widget/issues/{id}/comments");
        assert_eq!(
            plain.named_by(&headers(&[("x-ratelimit-resource", "search")])),
            Some("search".to_owned())
        );
        assert_eq!(plain.named_by(&headers(&[])), None);
        assert_eq!(plain.unnamed(), "");

        let buckets = RouteBuckets::new("discord", |p| {
            Route::major_parameter(p, &["channels", "guilds"])
        });
        let bucketed = BudgetRoute::of("/channels/9/messages/77", Some(&buckets));
        assert_eq!(
            bucketed.named_by(&headers(&[("x-ratelimit-bucket", "abcd")])),
            Some("abcd:channels/9".to_owned())
        );
        assert_eq!(bucketed.unnamed(), "/channels/9/messages/{id}");
    }

    #[test]
    fn a_route_takes_its_learnt_resource_or_the_credentials_only_one() {
        let resources = Resources::default();
        let issues = BudgetRoute::of("/repos/a/b/issues", None);
        let search = BudgetRoute::of("/search/issues", None);
        let forks = BudgetRoute::of("/repos/a/b/forks", None);
        assert_eq!(resources.known("fp", &issues), Known::Nothing);
        resources.learn("fp", &issues, "core");
        assert_eq!(
            resources.known("fp", &forks),
            Known::Resource("core".into())
        );
        resources.learn("fp", &search, "search");
        assert_eq!(
            resources.known("fp", &search),
            Known::Resource("search".into())
        );
        assert_eq!(resources.known("fp", &forks), Known::Unknown);
        assert_eq!(resources.known("other", &forks), Known::Nothing);
    }
}
