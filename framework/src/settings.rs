//! Typed settings: an integration declares its settings type and the shape of its credentials;
//! the framework parses, checks and normalizes them at connect time, stores the normalized form,
//! and hands the typed value to every hook.
//!
//! ```text
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! pub struct ForumSettings {
//!     pub base_url: String,
//!     #[serde(default)]
//!     pub channels: Vec<String>,
//!     #[serde(default = "per_page")]
//!     pub per_page: u32,
//! }
//!
//! impl Settings for ForumSettings {
//!     const CREDENTIALS: Option<&'static [CredentialField]> =
//!         Some(&[CredentialField::secret("token", "the forum's API token")]);
//!
//!     fn check(&mut self, check: &mut Check<'_>) {
//!         check.base_url("base_url", &mut self.base_url, "`https://forum.example.com`");
//!         check.each("channels", &mut self.channels, ids::slug("a channel id"));
//!         check.range("per_page", self.per_page, 1..=100);
//!     }
//! }
//! ```
//!
//! Every problem is named with its field (`channels[2]`, `credentials.token`), all of them at
//! once; nothing is created when any is found.

use std::fmt::Display;
use std::ops::RangeInclusive;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::SettingsError;
use crate::secret::Credentials;

/// An integration's settings type.
pub trait Settings:
    Serialize + DeserializeOwned + Clone + Send + Sync + std::fmt::Debug + 'static
{
    /// The credentials the platform takes. `None` accepts any JSON object (every string in it
    /// treated as a secret); `Some(&[])` takes none and refuses any given.
    const CREDENTIALS: Option<&'static [CredentialField]> = Some(&[]);

    /// Checks and normalizes the parsed settings, reporting every problem with its field.
    fn check(&mut self, _check: &mut Check<'_>) {}
}

/// Untyped settings (tests, scripted services): any JSON object, any credentials.
impl Settings for Value {
    const CREDENTIALS: Option<&'static [CredentialField]> = None;

    fn check(&mut self, check: &mut Check<'_>) {
        if !self.is_object() {
            check.problem("", "must be a JSON object");
        }
    }
}

/// Whether a credential field is a secret (never stored in the clear, scrubbed wherever it could
/// appear) or a plain identifier (a username, an account id) that may appear in data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Secret,
    Plain,
}

/// One field of an integration's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialField {
    pub name: &'static str,
    pub kind: CredentialKind,
    pub required: bool,
    /// What it is, for messages: "a GitHub token".
    pub describes: &'static str,
}

impl CredentialField {
    /// A required secret.
    pub const fn secret(name: &'static str, describes: &'static str) -> Self {
        Self {
            name,
            kind: CredentialKind::Secret,
            required: true,
            describes,
        }
    }

    /// A required plain identifier (a username that goes with a secret).
    pub const fn plain(name: &'static str, describes: &'static str) -> Self {
        Self {
            name,
            kind: CredentialKind::Plain,
            required: true,
            describes,
        }
    }

    /// The same field, which may be left out (public data is read without it).
    pub const fn optional(mut self) -> Self {
        self.required = false;
        self
    }
}

/// The names of the plain (non-secret) fields among `fields`.
pub fn plain_fields(fields: Option<&'static [CredentialField]>) -> Vec<&'static str> {
    fields
        .unwrap_or_default()
        .iter()
        .filter(|f| f.kind == CredentialKind::Plain)
        .map(|f| f.name)
        .collect()
}

/// Parses `settings` as `S`, checks the credentials against `S::CREDENTIALS`, and runs
/// [`Settings::check`]: the normalized settings, or every problem found.
pub fn validate<S: Settings>(
    settings: &Value,
    credentials: &Credentials,
) -> Result<S, SettingsError> {
    let mut parsed: S = parse(settings)?;
    let mut check = Check::new(credentials);
    parsed.check(&mut check);
    check.credential_fields(S::CREDENTIALS);
    check.into_result(parsed)
}

/// `validate` as JSON: what is stored.
pub fn validate_json<S: Settings>(
    settings: &Value,
    credentials: &Credentials,
) -> Result<Value, SettingsError> {
    let parsed: S = validate(settings, credentials)?;
    serde_json::to_value(parsed).map_err(|e| SettingsError::from_serde(&e))
}

/// Deserializes with the path of the field that does not fit (`per_page: invalid type…`).
fn parse<S: DeserializeOwned>(settings: &Value) -> Result<S, SettingsError> {
    serde_path_to_error::deserialize(settings).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // an unknown field is named by the message itself: the problem is its parent's
        let field = match path.as_str() {
            "." => "",
            _ if message.starts_with("unknown field") => {
                path.rsplit_once('.').map_or("", |(parent, _)| parent)
            }
            _ => &path,
        };
        SettingsError::new(field, message)
    })
}

/// Collects the problems of one set of settings. Each check names its field; all problems are
/// reported together.
pub struct Check<'a> {
    problems: SettingsError,
    credentials: &'a Credentials,
}

impl<'a> Check<'a> {
    pub fn new(credentials: &'a Credentials) -> Self {
        Self {
            problems: SettingsError::collect(),
            credentials,
        }
    }

    /// The credentials given with the settings (to check a combination).
    pub fn credentials(&self) -> &Credentials {
        self.credentials
    }

    /// A problem of `field` (empty for the settings as a whole).
    pub fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(field, message);
    }

    /// Whether any problem was found so far.
    pub fn has_problems(&self) -> bool {
        !self.problems.problems.is_empty()
    }

    pub fn into_result<T>(self, ok: T) -> Result<T, SettingsError> {
        self.problems.into_result(ok)
    }

    /// A base URL: trimmed, without a trailing `/`, and an absolute http(s) URL without query
    /// or fragment. `examples` follows "such as" (`` `https://dev.to/api` ``).
    pub fn base_url(&mut self, field: &str, url: &mut String, examples: &str) {
        *url = url.trim().trim_end_matches('/').to_owned();
        let valid = reqwest::Url::parse(url).is_ok_and(|parsed| {
            matches!(parsed.scheme(), "http" | "https")
                && parsed.has_host()
                && parsed.query().is_none()
                && parsed.fragment().is_none()
        });
        if !valid {
            self.problem(
                field,
                format!("must be an http(s) URL without query, such as {examples}, not `{url}`"),
            );
        }
    }

    /// A number within `range`.
    pub fn range<T: PartialOrd + Display>(
        &mut self,
        field: &str,
        value: T,
        range: RangeInclusive<T>,
    ) {
        if !range.contains(&value) {
            self.problem(
                field,
                format!(
                    "must be between {} and {}, not {value}",
                    range.start(),
                    range.end()
                ),
            );
        }
    }

    /// A list that must name at least one `what`.
    pub fn non_empty<T>(&mut self, field: &str, list: &[T], what: &str) {
        if list.is_empty() {
            self.problem(field, format!("must name at least one {what}"));
        }
    }

    /// At least one of several lists must be non-empty: `fields` are their names and whether
    /// each is empty.
    pub fn at_least_one_of(&mut self, fields: &[(&str, bool)], what: &str) {
        if fields.iter().all(|(_, empty)| *empty) {
            let names: Vec<String> = fields.iter().map(|(f, _)| format!("`{f}`")).collect();
            self.problem(
                "",
                format!("name at least one of {} ({what})", names.join(" or ")),
            );
        }
    }

    /// Every item of a list: `item` normalizes it in place and says what is wrong with it; an
    /// item equal to an earlier one (after normalization) is a problem too. Problems name
    /// `field[i]`.
    pub fn each<T: PartialEq + Display>(
        &mut self,
        field: &str,
        list: &mut [T],
        item: impl Fn(&mut T) -> Result<(), String>,
    ) {
        for i in 0..list.len() {
            let at = format!("{field}[{i}]");
            match item(&mut list[i]) {
                Err(message) => self.problem(at, message),
                Ok(()) if list[..i].contains(&list[i]) => {
                    self.problem(at, format!("repeats `{}`", list[i]));
                }
                Ok(()) => {}
            }
        }
    }

    /// The credentials against the fields a platform declares: required ones present, every one
    /// given a non-empty string, none unknown. Names only, never values, in messages.
    pub fn credential_fields(&mut self, fields: Option<&'static [CredentialField]>) {
        let Some(fields) = fields else { return };
        let given = match self.credentials.to_storage() {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            _ => {
                self.problem("credentials", "must be a JSON object");
                return;
            }
        };
        if fields.is_empty() && !given.is_empty() {
            let names: Vec<String> = given.keys().map(|k| format!("`{k}`")).collect();
            self.problem(
                "credentials",
                format!(
                    "must be empty: this platform takes none (got {})",
                    names.join(", ")
                ),
            );
            return;
        }
        for field in fields {
            let at = format!("credentials.{}", field.name);
            match given.get(field.name) {
                None | Some(Value::Null) if field.required => {
                    self.problem(at, format!("is required ({})", field.describes));
                }
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if !s.trim().is_empty() => {}
                Some(_) => {
                    let optional = if field.required {
                        String::new()
                    } else {
                        ", or left out".to_owned()
                    };
                    self.problem(
                        at,
                        format!("must be a non-empty string ({}){optional}", field.describes),
                    );
                }
            }
        }
        let known: Vec<String> = fields.iter().map(|f| format!("`{}`", f.name)).collect();
        for name in given.keys() {
            if !fields.iter().any(|f| f.name == name) {
                self.problem(
                    format!("credentials.{name}"),
                    format!(
                        "is not a credential of this platform (it takes {})",
                        known.join(", ")
                    ),
                );
            }
        }
    }
}

/// Item checks for [`Check::each`]: common identifier shapes.
pub mod ids {
    /// Letters, digits, `-` and `_` (trimmed; at most 100 characters): channel ids, usernames,
    /// slugs. `what` names it in the message ("a channel id").
    pub fn slug(what: &'static str) -> impl Fn(&mut String) -> Result<(), String> {
        move |value| {
            *value = value.trim().to_owned();
            let valid = !value.is_empty()
                && value.len() <= 100
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if valid {
                Ok(())
            } else {
                Err(format!(
                    "must be {what} (letters, digits, - and _), not `{value}`"
                ))
            }
        }
    }

    /// A decimal number as text (Discord snowflakes, Stack Exchange ids…).
    pub fn numeric(what: &'static str) -> impl Fn(&mut String) -> Result<(), String> {
        move |value| {
            *value = value.trim().to_owned();
            if !value.is_empty() && value.len() <= 20 && value.chars().all(|c| c.is_ascii_digit()) {
                Ok(())
            } else {
                Err(format!("must be {what} (digits only), not `{value}`"))
            }
        }
    }

    /// Any non-empty text of at most `max` characters (trimmed): keywords, search terms.
    pub fn text(max: usize) -> impl Fn(&mut String) -> Result<(), String> {
        move |value| {
            *value = value.trim().to_owned();
            if value.is_empty() {
                Err("must not be empty".to_owned())
            } else if value.chars().count() > max {
                Err(format!("must be at most {max} characters long"))
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        base_url: String,
        #[serde(default)]
        channels: Vec<String>,
        #[serde(default = "hundred")]
        per_page: u32,
    }

    fn hundred() -> u32 {
        100
    }

    impl Settings for Demo {
        const CREDENTIALS: Option<&'static [CredentialField]> = Some(&[
            CredentialField::secret("token", "the API token"),
            CredentialField::plain("username", "the account's username").optional(),
        ]);

        fn check(&mut self, check: &mut Check<'_>) {
            check.base_url("base_url", &mut self.base_url, "`https://x`");
            check.each("channels", &mut self.channels, ids::slug("a channel id"));
            check.range("per_page", self.per_page, 1..=100);
        }
    }

    #[test]
    fn settings_are_normalized_and_defaults_filled_in() {
        let creds = Credentials::new(json!({"token": "t"}));
        let s: Demo = validate(
            &json!({"base_url": " https://x.test/api/ ", "channels": [" a "]}),
            &creds,
        )
        .unwrap();
        assert_eq!(s.base_url, "https://x.test/api");
        assert_eq!(s.channels, ["a"]);
        assert_eq!(s.per_page, 100);
    }

    #[test]
    fn every_problem_is_named_with_its_field() {
        let creds = Credentials::new(json!({"username": 7, "tokn": "x"}));
        let err = validate::<Demo>(
            &json!({"base_url": "ftp://x", "channels": ["ok", "", " ok"], "per_page": 500}),
            &creds,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid settings: `base_url` must be an http(s) URL without query, such as \
             `https://x`, not `ftp://x`; `channels[1]` must be a channel id (letters, digits, - \
             and _), not ``; `channels[2]` repeats `ok`; `per_page` must be between 1 and 100, \
             not 500; `credentials.token` is required (the API token); `credentials.username` \
             must be a non-empty string (the account's username), or left out; \
             `credentials.tokn` is not a credential of this platform (it takes `token`, \
             `username`)"
        );
    }

    #[test]
    fn base_urls_are_normalized_or_named_as_a_problem() {
        let creds = Credentials::default();
        let mut check = Check::new(&creds);
        let mut ok = " https://ghe.example.com/api/v3/ ".to_owned();
        check.base_url("base_url", &mut ok, "`x`");
        assert_eq!(ok, "https://ghe.example.com/api/v3");
        assert!(!check.has_problems());
        for bad in [
            "ftp://x",
            "example.com",
            "http://x/?a=1",
            "http://x/#f",
            "http://",
        ] {
            let mut url = bad.to_owned();
            check.base_url("api_url", &mut url, "`https://x`");
        }
        let err = check.into_result(()).unwrap_err();
        assert_eq!(err.problems.len(), 5);
        assert_eq!(
            err.problems[0].to_string(),
            "`api_url` must be an http(s) URL without query, such as `https://x`, not `ftp://x`"
        );
    }

    #[test]
    fn a_shape_that_does_not_parse_names_its_field() {
        let creds = Credentials::new(json!({"token": "t"}));
        let err = validate::<Demo>(&json!({"base_url": "https://x", "per_page": "ten"}), &creds)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid settings: `per_page` invalid type: string \"ten\""),
            "{err}"
        );
        let err =
            validate::<Demo>(&json!({"base_url": "https://x", "chanels": []}), &creds).unwrap_err();
        assert!(err.to_string().contains("unknown field `chanels`"), "{err}");
        let err = validate::<Demo>(&json!({}), &creds).unwrap_err();
        assert!(
            err.to_string().contains("missing field `base_url`"),
            "{err}"
        );
    }

    #[test]
    fn a_platform_without_credentials_refuses_any_by_name_only() {
        #[derive(Debug, Clone, Serialize, Deserialize)]
        struct None_ {}
        impl Settings for None_ {}
        let err = validate::<None_>(&json!({}), &Credentials::new(json!({"token": "s3cret"})))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid settings: `credentials` must be empty: this platform takes none (got `token`)"
        );
        assert!(!err.contains("s3cret"));
    }

    #[test]
    fn untyped_settings_take_any_object() {
        let v: Value = validate(&json!({"a": 1}), &Credentials::new(json!({"x": "y"}))).unwrap();
        assert_eq!(v, json!({"a": 1}));
        assert!(validate::<Value>(&json!([1]), &Credentials::default()).is_err());
    }

    #[test]
    fn at_least_one_of_several_lists() {
        let creds = Credentials::default();
        let mut check = Check::new(&creds);
        check.at_least_one_of(
            &[("users", true), ("organizations", true)],
            "whose articles to read",
        );
        assert_eq!(
            check.into_result(()).unwrap_err().to_string(),
            "invalid settings: name at least one of `users` or `organizations` (whose articles to read)"
        );
    }

    #[test]
    fn plain_fields_are_listed() {
        assert_eq!(plain_fields(Demo::CREDENTIALS), ["username"]);
        assert!(plain_fields(None).is_empty());
    }
}
