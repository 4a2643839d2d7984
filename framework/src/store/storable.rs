//! What PostgreSQL can store, enforced once for every integration: a NUL (U+0000), which neither
//! `text` nor `jsonb` accepts, is stripped (and a record says so in its `nul_stripped`
//! attribute); a key too long for its index is refused with the field named; an error the
//! database raises for a value (SQLSTATE classes 22 and 54) is told apart from an outage.

use serde_json::Value;

use super::StoreError;
use crate::records::{Activity, Member};

/// The longest identifier or source id a unique index is asked to hold. PostgreSQL's btree
/// refuses entries over about 2,700 bytes (SQLSTATE 54000); the rest of the key needs room too.
pub const MAX_KEY_BYTES: usize = 2000;

/// The attribute listing the fields of a record a NUL was stripped from.
pub const NUL_STRIPPED: &str = "nul_stripped";

/// A value the store will not write, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` cannot be stored: {reason}")]
pub struct Unstorable {
    /// Where the value is: `activities[3].source_id`, `next_page`, `roots[0].identifier`.
    pub field: String,
    pub reason: String,
}

impl Unstorable {
    /// A key over [`MAX_KEY_BYTES`].
    pub fn too_long(field: impl Into<String>, value: &str) -> Self {
        Self {
            field: field.into(),
            reason: format!(
                "it is {} bytes, over the {MAX_KEY_BYTES} a key may have (its index cannot hold \
                 it: PostgreSQL would refuse it with SQLSTATE 54000)",
                value.len()
            ),
        }
    }
}

/// Refuses a key longer than [`MAX_KEY_BYTES`].
pub fn check_key(field: impl FnOnce() -> String, value: &str) -> Result<(), Unstorable> {
    if value.len() > MAX_KEY_BYTES {
        Err(Unstorable::too_long(field(), value))
    } else {
        Ok(())
    }
}

/// Removes every NUL from `text`; true when there was one.
pub fn strip_nul(text: &mut String) -> bool {
    if text.contains('\0') {
        text.retain(|c| c != '\0');
        true
    } else {
        false
    }
}

fn strip_nul_opt(text: &mut Option<String>) -> bool {
    text.as_mut().is_some_and(strip_nul)
}

/// Whether any string or key inside `value` holds a NUL.
pub fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Removes every NUL from the strings and keys inside `value`; true when there was one.
pub fn strip_nul_value(value: &mut Value) -> bool {
    if !has_nul(value) {
        return false;
    }
    match value {
        Value::String(s) => strip_nul(s),
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, v| strip_nul_value(v) | any),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (mut key, mut v) in entries {
                strip_nul(&mut key);
                strip_nul_value(&mut v);
                map.insert(key, v);
            }
            true
        }
        _ => false,
    }
}

/// A copy of `value` without NUL, borrowed when there was none.
pub fn without_nul(value: &Value) -> std::borrow::Cow<'_, Value> {
    if has_nul(value) {
        let mut owned = value.clone();
        strip_nul_value(&mut owned);
        std::borrow::Cow::Owned(owned)
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

fn note_stripped(attributes: &mut Value, fields: Vec<&'static str>) {
    if fields.is_empty() {
        return;
    }
    if !attributes.is_object() {
        *attributes = Value::Object(Default::default());
    }
    if let Value::Object(map) = attributes {
        map.insert(NUL_STRIPPED.to_owned(), Value::from(fields));
    }
}

/// Strips NUL from a member's fields; the member's `nul_stripped` attribute names them.
pub fn strip_member(member: &mut Member) {
    let mut fields = Vec::new();
    if strip_nul(&mut member.source_id) {
        fields.push("source_id");
    }
    if strip_nul(&mut member.username) {
        fields.push("username");
    }
    if strip_nul_opt(&mut member.display_name) {
        fields.push("display_name");
    }
    if strip_nul_opt(&mut member.url) {
        fields.push("url");
    }
    if strip_nul_value(&mut member.attributes) {
        fields.push("attributes");
    }
    note_stripped(&mut member.attributes, fields);
}

/// Strips NUL from an activity's fields and its member's; the activity's `nul_stripped`
/// attribute names its own fields (`member.source_id` for its member's id), the member's names
/// the member's.
pub fn strip_activity(activity: &mut Activity) {
    let mut fields = Vec::new();
    if strip_nul(&mut activity.source_id) {
        fields.push("source_id");
    }
    if strip_nul(&mut activity.activity_type) {
        fields.push("activity_type");
    }
    if activity.member.source_id.contains('\0') {
        fields.push("member.source_id");
    }
    strip_member(&mut activity.member);
    if strip_nul_opt(&mut activity.source_parent_id) {
        fields.push("source_parent_id");
    }
    if strip_nul_opt(&mut activity.channel) {
        fields.push("channel");
    }
    if strip_nul_opt(&mut activity.title) {
        fields.push("title");
    }
    if strip_nul_opt(&mut activity.body) {
        fields.push("body");
    }
    if strip_nul_opt(&mut activity.url) {
        fields.push("url");
    }
    if strip_nul_value(&mut activity.attributes) {
        fields.push("attributes");
    }
    note_stripped(&mut activity.attributes, fields);
}

impl StoreError {
    /// Why the database cannot store what it was given, when that is the failure: a value it
    /// refused (SQLSTATE class 22, data exception, or 54, a limit such as an index entry's
    /// size), or one the store refused before sending it. Retrying cannot help; an outage or a
    /// lost lease is not such a failure.
    pub fn unstorable(&self) -> Option<String> {
        match self {
            Self::Unstorable(u) => Some(u.to_string()),
            Self::Database(sqlx::Error::Database(db)) => {
                let code = db.code()?;
                if !(code.starts_with("22") || code.starts_with("54")) {
                    return None;
                }
                let mut text = format!(
                    "PostgreSQL refused a value: SQLSTATE {code}: {}",
                    db.message()
                );
                if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    if let Some(detail) = pg.detail() {
                        text.push_str(&format!(" ({detail})"));
                    }
                    if let Some(column) = pg.column() {
                        text.push_str(&format!(" in column `{column}`"));
                    }
                }
                if let Some(constraint) = db.constraint() {
                    text.push_str(&format!(" of `{constraint}`"));
                }
                if let Some(table) = db.table() {
                    text.push_str(&format!(" in table `{table}`"));
                }
                strip_nul(&mut text);
                Some(text)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_is_stripped_from_strings_and_keys_at_any_depth() {
        let mut value = json!({"a\0": ["x\0", {"b": "y\0z"}], "n": 1});
        assert!(strip_nul_value(&mut value));
        assert_eq!(value, json!({"a": ["x", {"b": "yz"}], "n": 1}));
        assert!(!strip_nul_value(&mut value));
    }

    #[test]
    fn keys_over_the_limit_are_refused_with_their_field() {
        assert!(check_key(|| "x".into(), &"k".repeat(MAX_KEY_BYTES)).is_ok());
        let err = check_key(|| "activities[2].source_id".into(), &"k".repeat(2001)).unwrap_err();
        assert_eq!(err.field, "activities[2].source_id");
        assert!(err.to_string().contains("2001 bytes"), "{err}");
    }
}
