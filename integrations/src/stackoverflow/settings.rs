//! Stack Overflow / Stack Exchange settings, checked at connect time.

use serde::{Deserialize, Serialize};
use tributary::settings::{Check, CredentialField, Settings, ids};

pub const DEFAULT_BASE_URL: &str = "https://api.stackexchange.com/2.3";
/// The most a page (and an id list) holds.
pub const MAX_PAGE_SIZE: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackoverflowSettings {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The Stack Exchange site (`stackoverflow`, `serverfault`, `superuser`, `math`…).
    #[serde(default = "default_site")]
    pub site: String,
    /// Tags whose questions are read, each on its own (`/questions?tagged=`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Keywords searched (`/search/advanced?q=`).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Items per page and ids per request (at most 100).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Requests per second per key: Stack Exchange refuses more than 30 a second from one IP.
    #[serde(default = "default_requests_per_second")]
    pub max_requests_per_second: u32,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_site() -> String {
    "stackoverflow".to_owned()
}

fn default_page_size() -> u32 {
    MAX_PAGE_SIZE
}

fn default_requests_per_second() -> u32 {
    25
}

impl Settings for StackoverflowSettings {
    const CREDENTIALS: Option<&'static [CredentialField]> = Some(&[CredentialField::secret(
        "key",
        "a Stack Apps key (10,000 requests a day instead of 300)",
    )
    .optional()]);

    fn check(&mut self, check: &mut Check<'_>) {
        check.base_url(
            "base_url",
            &mut self.base_url,
            &format!("`{DEFAULT_BASE_URL}`"),
        );
        self.site = self.site.trim().to_lowercase();
        if let Err(message) =
            ids::slug("a site name (`stackoverflow`, `serverfault`…)")(&mut self.site)
        {
            check.problem("site", message);
        }
        check.at_least_one_of(
            &[
                ("tags", self.tags.is_empty()),
                ("keywords", self.keywords.is_empty()),
            ],
            "what questions to read",
        );
        check.each("tags", &mut self.tags, |tag: &mut String| {
            *tag = tag.trim().to_lowercase();
            let valid = !tag.is_empty()
                && tag.len() <= 35
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+#.-".contains(c));
            if valid {
                Ok(())
            } else {
                Err(format!(
                    "must be a tag (letters, digits, + # . and -, at most 35), not `{tag}`"
                ))
            }
        });
        check.each("keywords", &mut self.keywords, ids::text(200));
        check.range("page_size", self.page_size, 1..=MAX_PAGE_SIZE);
        check.range(
            "max_requests_per_second",
            self.max_requests_per_second,
            1..=30,
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    use tributary::Credentials;
    use tributary::settings::validate;

    #[test]
    fn defaults_and_normalized_tags() {
        let s: StackoverflowSettings =
            validate(&json!({"tags": ["Rust", "c#"]}), &Credentials::default()).unwrap();
        assert_eq!(s.base_url, DEFAULT_BASE_URL);
        assert_eq!(s.site, "stackoverflow");
        assert_eq!(s.tags, ["rust", "c#"]);
        assert_eq!((s.page_size, s.max_requests_per_second), (100, 25));
    }
}
