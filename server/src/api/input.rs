//! Reading a request's parameters and body so that every refusal names its field.

use std::collections::HashMap;

use axum::body::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::problem::Problem;

/// A query string, read field by field.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Refuses parameters other than `known`, and NUL characters (PostgreSQL text cannot hold them).
    pub fn parse(raw: Option<&str>, known: &[&str]) -> Result<Self, Problem> {
        let mut map = HashMap::new();
        for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name).map_err(|m| Problem::invalid("query", m))?;
            let value = decode(value).map_err(|m| Problem::invalid(&name, m))?;
            if !known.contains(&name.as_str()) {
                return Err(Problem::invalid(
                    &name,
                    format!("is not a parameter here (known: {})", known.join(", ")),
                ));
            }
            if value.contains('\0') {
                return Err(Problem::invalid(&name, "must not contain NUL characters"));
            }
            map.insert(name, value);
        }
        Ok(Self(map))
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|v| !v.is_empty()).cloned()
    }

    pub fn uuid(&self, name: &str) -> Result<Option<Uuid>, Problem> {
        self.text(name).map(|v| uuid_field(name, &v)).transpose()
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, Problem> {
        self.text(name)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| Problem::invalid(name, "must be an integer"))
            })
            .transpose()
    }

    pub fn flag(&self, name: &str) -> Result<bool, Problem> {
        match self.text(name).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(Problem::invalid(name, "must be true or false")),
        }
    }
}

fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("has a malformed percent-encoding")?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8".to_owned())
}

/// A path or query id.
pub fn uuid_field(name: &str, value: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(value).map_err(|_| Problem::invalid(name, "must be a UUID"))
}

/// A JSON body as `T`; a refusal names the path of the field that did not fit.
pub fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Problem> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Problem::invalid("body", format!("is not valid JSON: {e}")))?;
    if let Some(path) = nul_in(&value, String::new()) {
        return Err(Problem::invalid(&path, "must not contain NUL characters"));
    }
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        Problem::invalid(&field, e.into_inner().to_string())
    })
}

/// The path of the first string (or key) holding a NUL character.
fn nul_in(value: &Value, at: String) -> Option<String> {
    let here = || {
        if at.is_empty() {
            "body".to_owned()
        } else {
            at.clone()
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => Some(here()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_in(v, format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if k.contains('\0') {
                Some(path)
            } else {
                nul_in(v, path)
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_decoded_checked_and_named() {
        let p = Params::parse(Some("platform=git%20hub&limit=5"), &["platform", "limit"])
            .expect("parses");
        assert_eq!(p.text("platform").as_deref(), Some("git hub"));
        assert_eq!(p.int("limit").expect("int"), Some(5));
        let unknown = Params::parse(Some("bogus=1"), &["limit"]).expect_err("refused");
        assert_eq!(unknown.field.as_deref(), Some("bogus"));
        let bad = Params::parse(Some("limit=x"), &["limit"]).expect("parses");
        assert_eq!(
            bad.int("limit").expect_err("refused").field.as_deref(),
            Some("limit")
        );
        let nul = Params::parse(Some("platform=%00"), &["platform"]).expect_err("refused");
        assert_eq!(nul.field.as_deref(), Some("platform"));
    }

    #[test]
    fn a_body_field_that_does_not_fit_is_named() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Body {
            onboarding: bool,
        }
        let e = json_body::<Body>(&Bytes::from_static(br#"{"onboarding":"yes"}"#))
            .expect_err("refused");
        assert_eq!(e.field.as_deref(), Some("onboarding"));
        let e =
            json_body::<Value>(&Bytes::from_static(br#"{"a":["\u0000"]}"#)).expect_err("refused");
        assert_eq!(e.field.as_deref(), Some("a[0]"));
        let e = json_body::<Value>(&Bytes::from_static(b"{")).expect_err("refused");
        assert_eq!(e.field.as_deref(), Some("body"));
    }
}
