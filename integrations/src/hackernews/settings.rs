//! Hacker News settings, validated at connect time.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary::http::check_base_url;
use tributary::{Credentials, SettingsError};

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

impl HackerNewsSettings {
    /// Parses and checks settings (every problem reported with its field) and normalizes them:
    /// terms trimmed, URLs without scheme, `www.` and trailing `/`, base URLs without trailing
    /// `/`.
    /// Hacker News needs no credentials: any credential given is refused.
    pub fn validate(settings: &Value, credentials: &Credentials) -> Result<Self, SettingsError> {
        let mut parsed: Self =
            serde_json::from_value(settings.clone()).map_err(|e| SettingsError::from_serde(&e))?;
        let mut problems = SettingsError::collect();
        check_base_url(
            &mut problems,
            "algolia_base_url",
            &mut parsed.algolia_base_url,
            &format!("`{DEFAULT_ALGOLIA_BASE_URL}`"),
        );
        check_base_url(
            &mut problems,
            "firebase_base_url",
            &mut parsed.firebase_base_url,
            &format!("`{DEFAULT_FIREBASE_BASE_URL}`"),
        );
        if parsed.keywords.is_empty() && parsed.urls.is_empty() {
            problems.push(
                "",
                "name at least one of `keywords` or `urls` (what to search Hacker News for)",
            );
        }
        for keyword in &mut parsed.keywords {
            *keyword = keyword.trim().to_owned();
        }
        check_terms(&mut problems, "keywords", &parsed.keywords, |k| {
            (!k.is_empty()).then_some(()).ok_or("must not be empty")
        });
        for url in &mut parsed.urls {
            *url = normalize_url(url);
        }
        check_terms(&mut problems, "urls", &parsed.urls, |u| {
            is_domain_or_url(u).then_some(()).ok_or(
                "must be a domain or a URL, such as `github.com/acme/widget` or \
                 `https://acme.dev`",
            )
        });
        if !(1..=MAX_HITS_PER_PAGE).contains(&parsed.hits_per_page) {
            problems.push(
                "hits_per_page",
                format!(
                    "must be between 1 and {MAX_HITS_PER_PAGE}, not {}",
                    parsed.hits_per_page
                ),
            );
        }
        if !(1..=100).contains(&parsed.max_requests_per_second) {
            problems.push(
                "max_requests_per_second",
                format!(
                    "must be between 1 and 100, not {}",
                    parsed.max_requests_per_second
                ),
            );
        }
        if !credentials.is_empty() {
            // the names of what was given, never the values
            let given = match credentials.to_storage() {
                Value::Object(map) => {
                    let names: Vec<String> = map.keys().map(|k| format!("`{k}`")).collect();
                    names.join(", ")
                }
                _ => "a value that is not an object".to_owned(),
            };
            problems.push(
                "credentials",
                format!("must be empty: Hacker News needs none (got {given})"),
            );
        }
        problems.into_result(parsed)
    }
}

/// Each term must pass `valid`, be at most [`MAX_TERM_CHARS`] long, and not repeat an earlier
/// one (Algolia ignores case, so neither do we).
fn check_terms(
    problems: &mut SettingsError,
    field: &str,
    terms: &[String],
    valid: impl Fn(&str) -> Result<(), &'static str>,
) {
    for (i, term) in terms.iter().enumerate() {
        let name = format!("{field}[{i}]");
        if let Err(message) = valid(term) {
            problems.push(name, format!("{message}, not `{term}`"));
        } else if term.chars().count() > MAX_TERM_CHARS {
            problems.push(name, format!("must be at most {MAX_TERM_CHARS} characters"));
        } else if terms[..i].iter().any(|t| t.eq_ignore_ascii_case(term)) {
            problems.push(name, format!("repeats `{term}`"));
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

    #[test]
    fn defaults_are_filled_in_and_terms_normalized() {
        let s = HackerNewsSettings::validate(
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
        let s = HackerNewsSettings::validate(
            &json!({"urls": ["acme.dev"], "algolia_base_url": "http://127.0.0.1:9/algolia/"}),
            &Credentials::new(json!({})),
        )
        .unwrap();
        assert_eq!(s.algolia_base_url, "http://127.0.0.1:9/algolia");
        assert!(s.keywords.is_empty());
    }

    #[test]
    fn every_problem_is_named() {
        let err = HackerNewsSettings::validate(
            &json!({
                "algolia_base_url": "hn.algolia.com",
                "firebase_base_url": "ftp://firebase",
                "keywords": ["rust", " ", "Rust"],
                "urls": ["github.com/acme", "not a url", "localhost", "GitHub.com/acme/"],
                "hits_per_page": 1001,
                "max_requests_per_second": 0
            }),
            &Credentials::new(json!({"api_key": "secret-value"})),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid settings: `algolia_base_url` must be an http(s) URL without query, such as \
             `https://hn.algolia.com/api/v1`, not `hn.algolia.com`; `firebase_base_url` must be \
             an http(s) URL without query, such as `https://hacker-news.firebaseio.com/v0`, not \
             `ftp://firebase`; `keywords[1]` must not be empty, not ``; `keywords[2]` repeats \
             `Rust`; `urls[1]` must be a domain or a URL, such as `github.com/acme/widget` or \
             `https://acme.dev`, not `not a url`; `urls[2]` must be a domain or a URL, such as \
             `github.com/acme/widget` or `https://acme.dev`, not `localhost`; `urls[3]` repeats \
             `GitHub.com/acme`; `hits_per_page` must be between 1 and 1000, not 1001; \
             `max_requests_per_second` must be between 1 and 100, not 0; `credentials` must be \
             empty: Hacker News needs none (got `api_key`)"
        );
        assert!(!err.to_string().contains("secret-value"));
    }

    #[test]
    fn nothing_to_search_unknown_fields_and_wrong_types_are_refused() {
        let none = HackerNewsSettings::validate(&json!({}), &Credentials::default()).unwrap_err();
        assert_eq!(
            none.to_string(),
            "invalid settings: name at least one of `keywords` or `urls` (what to search Hacker \
             News for)"
        );
        let typo =
            HackerNewsSettings::validate(&json!({"keyword": ["x"]}), &Credentials::default())
                .unwrap_err();
        assert!(
            typo.to_string().contains("unknown field `keyword`"),
            "{typo}"
        );
        let wrong =
            HackerNewsSettings::validate(&json!({"keywords": "x"}), &Credentials::default())
                .unwrap_err();
        assert!(
            wrong
                .to_string()
                .contains("invalid type: string \"x\", expected a sequence"),
            "{wrong}"
        );
        let long = "x".repeat(201);
        let err =
            HackerNewsSettings::validate(&json!({"keywords": [long]}), &Credentials::default())
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid settings: `keywords[0]` must be at most 200 characters"
        );
    }
}
