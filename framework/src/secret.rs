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

/// An integration's credentials as stored (a JSON object of secrets).
#[derive(Clone, Default, PartialEq)]
pub struct Credentials(Value);

/// The text that replaces a secret wherever one would have been written.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not scrubbed from text: they would match ordinary words.
const MIN_SCRUBBED_LEN: usize = 6;

impl Credentials {
    pub fn new(value: Value) -> Self {
        Self(value)
    }

    pub fn is_empty(&self) -> bool {
        match &self.0 {
            Value::Null => true,
            Value::Object(map) => map.is_empty(),
            _ => false,
        }
    }

    /// The string stored under `key`, as a secret.
    pub fn secret(&self, key: &str) -> Option<Secret> {
        self.0.get(key).and_then(Value::as_str).map(Secret::new)
    }

    /// The stored JSON, for writing it back to the store only.
    pub fn to_storage(&self) -> Value {
        self.0.clone()
    }

    /// Replaces every occurrence of any credential string in `text` by [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        self.for_each_secret(&mut |secret| {
            if out.contains(secret) {
                out = out.replace(secret, REDACTED);
            }
        });
        out
    }

    /// Scrubs every string inside a JSON value.
    pub fn scrub_value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                let scrubbed = self.scrub(s);
                if scrubbed != *s {
                    *s = scrubbed;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_value(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.scrub_value(v)),
            _ => {}
        }
    }

    fn for_each_secret(&self, f: &mut dyn FnMut(&str)) {
        fn walk(value: &Value, f: &mut dyn FnMut(&str)) {
            match value {
                Value::String(s) if s.len() >= MIN_SCRUBBED_LEN => f(s),
                Value::Array(items) => items.iter().for_each(|v| walk(v, f)),
                Value::Object(map) => map.values().for_each(|v| walk(v, f)),
                _ => {}
            }
        }
        walk(&self.0, f);
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = match &self.0 {
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
