//! Waits a platform asks of one *method* rather than of the whole credential: Stack Exchange's
//! `backoff` ("the same method must wait this many seconds before it is called again"). Other
//! methods of the credential go on; every stream of the process that calls the method waits.
//!
//! A method is a request's path with its ids generalized ([`method_of`]): `GET
//! /questions/1;2;3/answers` and `GET /questions/4/answers` are one method,
//! `GET /questions/{}/answers`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::pacing::Pacer;
use super::waits::after;
use crate::error::IntegrationError;

/// The method of a request described as `GET /path`: path segments made of ids (digits joined by
/// `;` or `,`, before an optional `.json`) become `{}`; the query is dropped.
pub fn method_of(what: &str) -> String {
    let what = what.split('?').next().unwrap_or_default();
    let (verb, path) = what.split_once(' ').unwrap_or(("", what));
    let path: Vec<String> = path
        .split('/')
        .map(|segment| {
            let (stem, extension) = match segment.split_once('.') {
                Some((stem, ext)) => (stem, Some(ext)),
                None => (segment, None),
            };
            let is_ids = !stem.is_empty()
                && stem.chars().any(|c| c.is_ascii_digit())
                && stem
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == ';' || c == ',');
            match (is_ids, extension) {
                (true, Some(ext)) => format!("{{}}.{ext}"),
                (true, None) => "{}".to_owned(),
                (false, _) => segment.to_owned(),
            }
        })
        .collect();
    let path = path.join("/");
    if verb.is_empty() {
        path
    } else {
        format!("{verb} {path}")
    }
}

/// Until when each method of one credential must wait.
#[derive(Debug, Default)]
pub struct MethodBackoffs {
    until: Mutex<HashMap<String, Instant>>,
}

impl MethodBackoffs {
    /// Nothing of `method` goes out for `wait` (a longer block already in place stays).
    pub fn block(&self, method: &str, wait: Duration) {
        let until = Instant::now() + wait;
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(method.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// How long `method` must still wait (zero when it may go now). Forgets expired blocks.
    pub fn remaining(&self, method: &str) -> Duration {
        let now = Instant::now();
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, until| *until > now);
        map.get(method)
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }
}

impl Pacer {
    /// [`Pacer::acquire`] for a request described as `GET /path`: first waits out a `backoff`
    /// its method was given (inline when short, else [`IntegrationError::RateLimited`]).
    pub async fn acquire_for(&self, what: &str) -> Result<(), IntegrationError> {
        let method = method_of(what);
        let wait = self.backoffs.remaining(&method);
        if !wait.is_zero() {
            if wait > self.max_inline_wait() {
                return Err(IntegrationError::rate_limited(
                    after(crate::clock::now(), wait),
                    format!(
                        "`{method}` was asked to back off: it may be called again in {wait:.1?}"
                    ),
                ));
            }
            tokio::time::sleep(wait).await;
        }
        self.acquire().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_paths_are_generalized() {
        assert_eq!(
            method_of("GET /questions/1;2;3/answers"),
            "GET /questions/{}/answers"
        );
        assert_eq!(
            method_of("GET /questions/4/answers?site=x"),
            "GET /questions/{}/answers"
        );
        assert_eq!(method_of("GET /t/123.json"), "GET /t/{}.json");
        assert_eq!(method_of("GET /t/123/posts.json"), "GET /t/{}/posts.json");
        assert_eq!(method_of("GET /search/advanced"), "GET /search/advanced");
        assert_eq!(method_of("GET /c/v2-news/7.json"), "GET /c/v2-news/{}.json");
        assert_eq!(method_of("/posts/1,2/comments"), "/posts/{}/comments");
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_holds_its_method_only_and_the_longest_wins() {
        let backoffs = MethodBackoffs::default();
        backoffs.block("GET /questions", Duration::from_secs(10));
        backoffs.block("GET /questions", Duration::from_secs(3));
        assert_eq!(
            backoffs.remaining("GET /questions"),
            Duration::from_secs(10)
        );
        assert_eq!(backoffs.remaining("GET /answers"), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(backoffs.remaining("GET /questions"), Duration::from_secs(6));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(backoffs.remaining("GET /questions"), Duration::ZERO);
    }
}
