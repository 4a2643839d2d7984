//! Hacker News settings, validated at connect time.

use serde::{Deserialize, Serialize};
use tributary::settings::{Check, CredentialField, Settings};

/// HN Search by Algolia.
pub const DEFAULT_ALGOLIA_BASE_URL: &str = "https://hn.algolia.com/api/v1";
/// The official HN API (Firebase).
pub const DEFAULT_FIREBASE_BASE_URL: &str = "https://hacker-news.firebaseio.com/v0";
/// The largest `hitsPerPage` Algolia accepts.
pub const MAX_HITS_PER_PAGE: u32 = 1000;
/// Longer keywords are refused (Algolia reads at most 512 bytes of a query).
const MAX_TERM_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HackerNewsSettings {
    /// Words or phrases searched in stories and comments (titles, texts, URLs), each sent to
    /// Algolia as its `query`: every word must match; `"quoted words"` match as a phrase.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Domains or URLs whose mentions are searched (`github.com/acme/widget`), stored without
    /// scheme, `www.` and trailing `/`.
    #[serde(default)]
    pub urls: Vec<String>,
    /// The Algolia HN Search API root.
    #[serde(default = "default_algolia_base_url")]
    pub algolia_base_url: String,
    /// The official HN API root (user profiles).
    #[serde(default = "default_firebase_base_url")]
    pub firebase_base_url: String,
    /// Hits per search request: the largest Algolia accepts by default.
    #[serde(default = "default_hits_per_page")]
    pub hits_per_page: u32,
    /// Requests per second to each of the two APIs. Algolia allows 10,000 requests an hour per
    /// IP address and blocks an address that sends more: the default, 2 (7,200 an hour), stays
    /// under it.
    #[serde(default = "default_requests_per_second")]
    pub max_requests_per_second: u32,
}

fn default_algolia_base_url() -> String {
    DEFAULT_ALGOLIA_BASE_URL.to_owned()
}

fn default_firebase_base_url() -> String {
    DEFAULT_FIREBASE_BASE_URL.to_owned()
}

fn default_hits_per_page() -> u32 {
    MAX_HITS_PER_PAGE
}

fn default_requests_per_second() -> u32 {
    2
}

impl Settings for HackerNewsSettings {
    /// Hacker News needs no credentials: any given is refused.
    const CREDENTIALS: Option<&'static [CredentialField]> = Some(&[]);

    /// Terms trimmed, URLs without scheme, `www.` and trailing `/`, base URLs without trailing
    /// `/`.
    fn check(&mut self, check: &mut Check<'_>) {
        check.base_url(
            "algolia_base_url",
            &mut self.algolia_base_url,
            &format!("`{DEFAULT_ALGOLIA_BASE_URL}`"),
        );
        check.base_url(
            "firebase_base_url",
            &mut self.firebase_base_url,
            &format!("`{DEFAULT_FIREBASE_BASE_URL}`"),
        );
        check.at_least_one_of(
            &[
                ("keywords", self.keywords.is_empty()),
                ("urls", self.urls.is_empty()),
            ],
            "what to search Hacker News for",
        );
        for keyword in &mut self.keywords {
            *keyword = keyword.trim().to_owned();
        }
        check_terms(check, "keywords", &self.keywords, |k| {
            (!k.is_empty()).then_some(()).ok_or("must not be empty")
        });
        for url in &mut self.urls {
            *url = normalize_url(url);
        }
        check_terms(check, "urls", &self.urls, |u| {
            is_domain_or_url(u).then_some(()).ok_or(
                "must be a domain or a URL, such as `github.com/acme/widget` or \
                 `https://acme.dev`",
            )
        });
        check.range("hits_per_page", self.hits_per_page, 1..=MAX_HITS_PER_PAGE);
        check.range(
            "max_requests_per_second",
            self.max_requests_per_second,
            1..=100,
        );
    }
}

/// Each term must pass `valid`, be at most [`MAX_TERM_CHARS`] long, and not repeat an earlier
/// one (Algolia ignores case, so neither do we).
fn check_terms(
    check: &mut Check<'_>,
    field: &str,
    terms: &[String],
    valid: impl Fn(&str) -> Result<(), &'static str>,
) {
    for (i, term) in terms.iter().enumerate() {
        let name = format!("{field}[{i}]");
        if let Err(message) = valid(term) {
            check.problem(name, format!("{message}, not `{term}`"));
        } else if term.chars().count() > MAX_TERM_CHARS {
            check.problem(name, format!("must be at most {MAX_TERM_CHARS} characters"));
        } else if terms[..i].iter().any(|t| t.eq_ignore_ascii_case(term)) {
            check.problem(name, format!("repeats `{term}`"));
        }
    }
}

/// `https://www.acme.dev/widget/` → `acme.dev/widget`: what every mention has, however written
/// (Algolia matches the words of a query wherever they stand, so `acme.dev` finds
/// `www.acme.dev` too).
fn normalize_url(url: &str) -> String {
    let mut rest = url.trim();
    for prefix in ["https://", "http://", "www."] {
        if rest
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        {
            rest = &rest[prefix.len()..];
        }
    }
    rest.trim_end_matches('/').to_owned()
}

/// A host with a dot (`acme.dev`), optionally followed by a path; no spaces.
fn is_domain_or_url(url: &str) -> bool {
    let host = url.split('/').next().unwrap_or_default();
    let host_chars = host
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | ':'));
    host.contains('.')
        && !host.starts_with('.')
        && host_chars
        && !url.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    use tributary::Credentials;
    use tributary::settings::validate;

    #[test]
    fn defaults_are_filled_in_and_terms_normalized() {
        let s: HackerNewsSettings = validate(
            &json!({"keywords": [" Tributary "], "urls": ["HTTPS://github.com/acme/widget/"]}),
            &Credentials::default(),
        )
        .unwrap();
        assert_eq!(s.algolia_base_url, "https://hn.algolia.com/api/v1");
        assert_eq!(s.firebase_base_url, "https://hacker-news.firebaseio.com/v0");
        assert_eq!((s.hits_per_page, s.max_requests_per_second), (1000, 2));
        assert_eq!(s.keywords, ["Tributary"]);
        assert_eq!(s.urls, ["github.com/acme/widget"]);
        assert_eq!(normalize_url(" http://WWW.acme.dev/ "), "acme.dev");
        assert_eq!(normalize_url("www.acme.dev/x"), "acme.dev/x");
    }
}
