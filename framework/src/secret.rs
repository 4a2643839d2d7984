//! Credentials and the secrets in them: readable by the integration that needs them, never
//! printed, logged, serialized into stream data or stored errors.

use std::fmt;

use serde_json::Value;

/// One secret value. `Debug` and `Display` print `[redacted]`; the value is reached only through
/// [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An integration's credentials as stored (a JSON object). Every field is a secret unless the
/// integration declared it plain (a username that goes with a token, see
/// [`crate::settings::CredentialField::plain`]).
#[derive(Clone, Default, PartialEq)]
pub struct Credentials {
    value: Value,
    plain: Vec<&'static str>,
}

/// The text that replaces a secret wherever one would have been written.
pub const REDACTED: &str = "[redacted]";

/// Secrets at least this long are scrubbed wherever they occur in a text; shorter ones only
/// where they stand alone (not inside a longer word or number), so that scrubbing never rewrites
/// ordinary data that happens to contain them.
const MIN_SUBSTRING_LEN: usize = 8;

impl Credentials {
    pub fn new(value: Value) -> Self {
        Self {
            value,
            plain: Vec::new(),
        }
    }

    /// The same credentials, with `fields` known to be plain identifiers (never scrubbed).
    pub fn with_plain_fields(mut self, fields: Vec<&'static str>) -> Self {
        self.plain = fields;
        self
    }

    pub fn is_empty(&self) -> bool {
        match &self.value {
            Value::Null => true,
            Value::Object(map) => map.is_empty(),
            _ => false,
        }
    }

    /// The string stored under `key`, as a secret.
    pub fn secret(&self, key: &str) -> Option<Secret> {
        self.value.get(key).and_then(Value::as_str).map(Secret::new)
    }

    /// The stored JSON, for writing it back to the store only.
    pub fn to_storage(&self) -> Value {
        self.value.clone()
    }

    /// Whether there is any secret to scrub.
    pub fn has_secrets(&self) -> bool {
        let mut any = false;
        self.for_each_secret(&mut |_| any = true);
        any
    }

    /// Replaces every occurrence of a secret in `text` by [`REDACTED`] (short secrets only where
    /// they stand alone). Plain fields are left alone.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        self.for_each_secret(&mut |secret| {
            if !out.contains(secret) {
                return;
            }
            out = if secret.chars().count() >= MIN_SUBSTRING_LEN {
                out.replace(secret, REDACTED)
            } else {
                replace_standalone(&out, secret)
            };
        });
        out
    }

    /// Scrubs one text in place; true when it changed.
    pub fn scrub_in_place(&self, text: &mut String) -> bool {
        let scrubbed = self.scrub(text);
        if scrubbed == *text {
            false
        } else {
            *text = scrubbed;
            true
        }
    }

    /// Scrubs every string (and key) inside a JSON value.
    pub fn scrub_value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                self.scrub_in_place(s);
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_value(v)),
            Value::Object(map) => {
                if map.keys().any(|k| self.scrub(k) != *k) {
                    let entries = std::mem::take(map);
                    for (key, v) in entries {
                        map.insert(self.scrub(&key), v);
                    }
                }
                map.values_mut().for_each(|v| self.scrub_value(v));
            }
            _ => {}
        }
    }

    fn for_each_secret(&self, f: &mut dyn FnMut(&str)) {
        fn walk(value: &Value, f: &mut dyn FnMut(&str)) {
            match value {
                Value::String(s) if !s.is_empty() => f(s),
                Value::Array(items) => items.iter().for_each(|v| walk(v, f)),
                Value::Object(map) => map.values().for_each(|v| walk(v, f)),
                _ => {}
            }
        }
        match &self.value {
            Value::Object(map) => map
                .iter()
                .filter(|(k, _)| !self.plain.contains(&k.as_str()))
                .for_each(|(_, v)| walk(v, f)),
            other => walk(other, f),
        }
    }
}

/// Replaces the occurrences of `secret` in `text` not adjacent to a letter or digit.
fn replace_standalone(text: &str, secret: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut before: Option<char> = None;
    while let Some(at) = rest.find(secret) {
        let prev = rest[..at].chars().next_back().or(before);
        let next = rest[at + secret.len()..].chars().next();
        let alone =
            !prev.is_some_and(char::is_alphanumeric) && !next.is_some_and(char::is_alphanumeric);
        out.push_str(&rest[..at]);
        out.push_str(if alone { REDACTED } else { secret });
        before = secret.chars().next_back();
        rest = &rest[at + secret.len()..];
    }
    out.push_str(rest);
    out
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = match &self.value {
            Value::Object(map) => map.keys().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        write!(f, "Credentials({keys:?}: [redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let creds = Credentials::new(json!({"token": "ghp_supersecret"}));
        let token = creds.secret("token").expect("token");
        assert_eq!(token.expose(), "ghp_supersecret");
        assert!(!format!("{creds:?} {token:?} {token}").contains("supersecret"));
    }

    #[test]
    fn plain_fields_are_never_scrubbed_and_short_secrets_only_where_they_stand_alone() {
        let creds = Credentials::new(json!({"username": "github", "token": "pin42"}))
            .with_plain_fields(vec!["username"]);
        assert_eq!(
            creds.scrub("https://api.github.com/repos/github/x?page=2"),
            "https://api.github.com/repos/github/x?page=2"
        );
        assert_eq!(
            creds.scrub("pin=pin42&x=spin42 pin420 pin42"),
            "pin=[redacted]&x=spin42 pin420 [redacted]"
        );
        assert!(creds.has_secrets());
        let only_plain =
            Credentials::new(json!({"username": "ada"})).with_plain_fields(vec!["username"]);
        assert!(!only_plain.has_secrets());
    }

    #[test]
    fn scrub_replaces_secrets_in_text_and_json() {
        let creds =
            Credentials::new(json!({"token": "ghp_supersecret", "nested": {"key": "abcdefgh"}}));
        assert_eq!(
            creds.scrub("GET /x?access_token=ghp_supersecret failed"),
            "GET /x?access_token=[redacted] failed"
        );
        let mut data = json!({"url": "https://h/?k=abcdefgh", "list": ["ghp_supersecret"], "n": 3});
        creds.scrub_value(&mut data);
        assert_eq!(
            data,
            json!({"url": "https://h/?k=[redacted]", "list": ["[redacted]"], "n": 3})
        );
    }
}
