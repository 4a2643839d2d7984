//! The messages workers take from the queue: one versioned JSON wire format any producer can send
//! (the scripts, the tick generator, the `aws` CLI, another service).
//!
//! ```json
//! {"type": "process_integration", "integration_id": "<uuid>", "onboarding": true}
//! {"type": "continue_run", "run_id": "<uuid>"}
//! {"type": "tick", "slot": "2026-11-22T21:13:00Z"}
//! ```
//!
//! * `type` says what the message asks for. `process_integration` starts a run of the integration
//!   (`onboarding`, default `false`, says which kind) or, if it already has an active run,
//!   processes that one. Its run is keyed by the queue's message id, or by the optional `key` the
//!   producer gives (1–200 characters, no control characters): messages with the same key make
//!   one run, so a producer may retry a send it is unsure of. `continue_run` processes an
//!   existing run (it must be pending, delayed and due, or left by a dead worker). `tick` is one minute slot of the tick generator: checks that
//!   are due, delayed runs whose time has come, runs whose worker died.
//! * `v` is the format's version: optional, `1` when absent. This build reads version 1 and writes
//!   `"v": 1`. A later version adds fields or types under a new number; readers refuse numbers
//!   they do not know instead of guessing.
//! * Fields this version does not define are ignored, so a producer may attach its own
//!   (a correlation id, say).
//! * A tick's `slot` is an RFC 3339 time on a whole minute (seconds zero); any offset is accepted
//!   and read as UTC.
//!
//! A body that is not such a message is refused with a [`MessageError`] whose text is the reason
//! recorded with the message in the dead-letter queue.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The version of the wire format this build reads and writes.
pub const MESSAGE_VERSION: u64 = 1;

/// The types this version defines, in the order the docs list them.
pub const MESSAGE_TYPES: [&str; 3] = ["process_integration", "continue_run", "tick"];

/// Bodies longer than this are refused before parsing (SQS's own limit is 256 KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A message, as decoded from its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Start a run of the integration (or process its active run).
    ProcessIntegration {
        integration_id: Uuid,
        #[serde(default)]
        onboarding: bool,
        /// The producer's key for this request: messages with the same key make one run of the
        /// integration, whenever they arrive (a send retried after its run ended included).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Process an existing run.
    ContinueRun { run_id: Uuid },
    /// One minute slot of the tick generator.
    Tick { slot: TickSlot },
}

impl Message {
    pub fn continue_run(run_id: Uuid) -> Self {
        Self::ContinueRun { run_id }
    }

    /// A `process_integration` without a key: keyed by the queue's message id.
    pub fn process_integration(integration_id: Uuid, onboarding: bool) -> Self {
        Self::ProcessIntegration {
            integration_id,
            onboarding,
            key: None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Self::ProcessIntegration { .. } => "process_integration",
            Self::ContinueRun { .. } => "continue_run",
            Self::Tick { .. } => "tick",
        }
    }

    /// The body to send: the message with `"v": 1`.
    pub fn encode(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("v".to_owned(), Value::from(MESSAGE_VERSION));
        }
        value.to_string()
    }

    /// Reads a body; the error says, in words, what is wrong with it.
    pub fn decode(body: &str) -> Result<Self, MessageError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(MessageError::TooLarge { bytes: body.len() });
        }
        if body.trim().is_empty() {
            return Err(MessageError::Empty);
        }
        let value: Value = serde_json::from_str(body).map_err(|e| MessageError::NotJson {
            detail: e.to_string(),
        })?;
        let Value::Object(map) = &value else {
            return Err(MessageError::NotAnObject {
                found: json_kind(&value),
            });
        };
        match map.get("v") {
            None => {}
            Some(Value::Number(n)) if n.as_u64() == Some(MESSAGE_VERSION) => {}
            Some(other) => {
                return Err(MessageError::UnsupportedVersion {
                    found: clip(&other.to_string()),
                });
            }
        }
        let kind = match map.get("type") {
            None => return Err(MessageError::MissingType),
            Some(Value::String(kind)) => kind.clone(),
            Some(other) => {
                return Err(MessageError::UnknownType {
                    found: clip(&other.to_string()),
                });
            }
        };
        if !MESSAGE_TYPES.contains(&kind.as_str()) {
            return Err(MessageError::UnknownType {
                found: clip(&format!("\"{kind}\"")),
            });
        }
        let message: Self =
            serde_json::from_value(value).map_err(|e| MessageError::InvalidFields {
                kind: kind.clone(),
                detail: clip(&e.to_string()),
            })?;
        if let Self::ProcessIntegration { key: Some(key), .. } = &message {
            check_key(key).map_err(|detail| MessageError::InvalidFields { kind, detail })?;
        }
        Ok(message)
    }
}

/// The trigger key of the run a `process_integration` starts: its `key`, else the id the queue
/// gave the message (a redelivery has the same id). A tick's is [`TickSlot::trigger_key`].
pub fn process_trigger_key(key: Option<&str>, message_id: &str) -> String {
    match key {
        Some(key) => format!("key:{key}"),
        None => format!("message:{message_id}"),
    }
}

/// The longest `key` a `process_integration` may carry, in characters.
pub const MAX_KEY_CHARS: usize = 200;

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("`key` is empty; leave it out to key the run by the message id".into());
    }
    let chars = key.chars().count();
    if chars > MAX_KEY_CHARS {
        return Err(format!(
            "`key` is {chars} characters; at most {MAX_KEY_CHARS} are accepted"
        ));
    }
    if key.chars().any(char::is_control) {
        return Err("`key` contains a control character".into());
    }
    Ok(())
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ProcessIntegration {
                integration_id,
                onboarding,
                ..
            } => write!(
                f,
                "process_integration {integration_id} ({})",
                if *onboarding { "onboarding" } else { "check" }
            ),
            Self::ContinueRun { run_id } => write!(f, "continue_run {run_id}"),
            Self::Tick { slot } => write!(f, "tick {slot}"),
        }
    }
}

/// Text taken from a message, shortened for a log line and a dead-letter reason.
fn clip(text: &str) -> String {
    const MAX: usize = 120;
    if text.chars().count() <= MAX {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(MAX).collect();
    clipped.push('…');
    clipped
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Why a body is not a message. The text is what the dead-letter queue records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the message body is empty")]
    Empty,
    #[error("the message body is {bytes} bytes; at most {MAX_BODY_BYTES} are accepted")]
    TooLarge { bytes: usize },
    #[error("the message body is not JSON: {detail}")]
    NotJson { detail: String },
    #[error("the message must be a JSON object, not {found}")]
    NotAnObject { found: &'static str },
    #[error(
        "unsupported message version {found}: this worker reads version {MESSAGE_VERSION} (or no `v`)"
    )]
    UnsupportedVersion { found: String },
    #[error("the message has no `type`; expected one of process_integration, continue_run, tick")]
    MissingType,
    #[error(
        "unknown message type {found}; expected one of process_integration, continue_run, tick"
    )]
    UnknownType { found: String },
    #[error("invalid `{kind}` message: {detail}")]
    InvalidFields { kind: String, detail: String },
}

/// A tick generator slot: a whole UTC minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TickSlot(DateTime<Utc>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TickSlotError {
    #[error("`{0}` is not an RFC 3339 time")]
    NotRfc3339(String),
    #[error("`{0}` is not on a whole minute (seconds must be zero)")]
    NotAMinute(String),
}

impl TickSlot {
    /// The slot `at` falls in (seconds dropped).
    pub fn containing(at: DateTime<Utc>) -> Self {
        let minute = at.timestamp().div_euclid(60) * 60;
        Self(DateTime::from_timestamp(minute, 0).unwrap_or(at))
    }

    /// The slot starting at `at`, which must be on a whole minute.
    pub fn exact(at: DateTime<Utc>) -> Result<Self, TickSlotError> {
        if at.second() != 0 || at.nanosecond() != 0 {
            return Err(TickSlotError::NotAMinute(at.to_rfc3339()));
        }
        Ok(Self(at))
    }

    pub fn start(self) -> DateTime<Utc> {
        self.0
    }

    /// Minutes since the Unix epoch: what `ticks_between_checks` divides.
    pub fn minute_index(self) -> i64 {
        self.0.timestamp().div_euclid(60)
    }

    pub fn next(self) -> Self {
        Self(self.0 + chrono::Duration::minutes(1))
    }

    /// The trigger key of the check runs this slot starts: a slot makes one run per integration,
    /// however often its tick is delivered.
    pub fn trigger_key(self) -> String {
        format!("tick:{self}")
    }
}

impl fmt::Display for TickSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

impl FromStr for TickSlot {
    type Err = TickSlotError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let at = DateTime::parse_from_rfc3339(s)
            .map_err(|_| TickSlotError::NotRfc3339(s.to_owned()))?
            .with_timezone(&Utc);
        if at.second() != 0 || at.nanosecond() != 0 {
            return Err(TickSlotError::NotAMinute(s.to_owned()));
        }
        Ok(Self(at))
    }
}

impl Serialize for TickSlot {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TickSlot {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::TimeZone;

    const ID: &str = "5b0e3a57-8f8e-4a43-9d4c-0f4f8e7f2a11";

    fn id() -> Uuid {
        ID.parse().unwrap()
    }

    fn err(body: &str) -> MessageError {
        Message::decode(body).unwrap_err()
    }

    #[test]
    fn the_documented_forms_decode() {
        assert_eq!(
            Message::decode(&format!(
                r#"{{"type":"process_integration","integration_id":"{ID}","onboarding":true}}"#
            )),
            Ok(Message::process_integration(id(), true))
        );
        assert_eq!(
            Message::decode(&format!(
                r#"{{"type":"continue_run","run_id":"{ID}","v":1}}"#
            )),
            Ok(Message::ContinueRun { run_id: id() })
        );
        let tick = Message::decode(r#"{"type":"tick","slot":"2026-11-22T21:13:00Z"}"#).unwrap();
        let slot = TickSlot::exact(Utc.with_ymd_and_hms(2026, 11, 22, 21, 13, 0).unwrap()).unwrap();
        assert_eq!(tick, Message::Tick { slot });
    }

    #[test]
    fn onboarding_defaults_to_false_and_unknown_fields_are_ignored() {
        assert_eq!(
            Message::decode(&format!(
                r#"{{"type":"process_integration","integration_id":"{ID}","trace":"abc"}}"#
            )),
            Ok(Message::process_integration(id(), false))
        );
    }

    #[test]
    fn encoding_round_trips_and_carries_the_version() {
        for message in [
            Message::process_integration(id(), true),
            Message::ProcessIntegration {
                integration_id: id(),
                onboarding: false,
                key: Some("signup-42 ✓".into()),
            },
            Message::continue_run(id()),
            Message::Tick {
                slot: TickSlot::containing(Utc::now()),
            },
        ] {
            let body = message.encode();
            let value: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(value["v"], 1);
            assert_eq!(value["type"], message.type_name());
            assert_eq!(Message::decode(&body).unwrap(), message);
        }
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_refused() {
        assert_eq!(err(""), MessageError::Empty);
        assert_eq!(err("  \n"), MessageError::Empty);
        assert!(matches!(err("not json"), MessageError::NotJson { .. }));
        assert!(matches!(
            err(r#"{"type":"tick""#),
            MessageError::NotJson { .. }
        ));
        assert_eq!(
            err("[1,2]"),
            MessageError::NotAnObject { found: "an array" }
        );
        assert_eq!(
            err("\"tick\""),
            MessageError::NotAnObject { found: "a string" }
        );
        assert_eq!(err("null"), MessageError::NotAnObject { found: "null" });
        assert_eq!(err("42"), MessageError::NotAnObject { found: "a number" });
        let huge = format!(
            r#"{{"type":"tick","pad":"{}"}}"#,
            "x".repeat(MAX_BODY_BYTES)
        );
        assert!(matches!(err(&huge), MessageError::TooLarge { .. }));
    }

    #[test]
    fn types_are_checked() {
        assert_eq!(err(r#"{"run_id":"x"}"#), MessageError::MissingType);
        assert_eq!(
            err(r#"{"type":"explode"}"#),
            MessageError::UnknownType {
                found: "\"explode\"".into()
            }
        );
        assert_eq!(
            err(r#"{"type":7}"#),
            MessageError::UnknownType { found: "7".into() }
        );
        let text = err(r#"{"type":"Tick"}"#).to_string();
        assert!(text.contains("unknown message type \"Tick\""), "{text}");
        assert!(
            text.contains("process_integration, continue_run, tick"),
            "{text}"
        );
    }

    #[test]
    fn versions_other_than_1_are_refused() {
        let body = |v: &str| format!(r#"{{"type":"continue_run","run_id":"{ID}","v":{v}}}"#);
        assert!(Message::decode(&body("1")).is_ok());
        for v in ["2", "0", "\"1\"", "1.5", "null", "-1"] {
            assert!(
                matches!(err(&body(v)), MessageError::UnsupportedVersion { .. }),
                "v = {v}"
            );
        }
        assert!(
            err(&body("2"))
                .to_string()
                .contains("unsupported message version 2")
        );
    }

    #[test]
    fn missing_or_malformed_fields_are_named() {
        let e = err(r#"{"type":"process_integration"}"#).to_string();
        assert!(
            e.contains("invalid `process_integration` message") && e.contains("integration_id"),
            "{e}"
        );
        let e = err(r#"{"type":"process_integration","integration_id":"nope"}"#).to_string();
        assert!(e.contains("invalid `process_integration` message"), "{e}");
        let e = err(&format!(
            r#"{{"type":"process_integration","integration_id":"{ID}","onboarding":"yes"}}"#
        ))
        .to_string();
        assert!(e.contains("invalid type"), "{e}");
        let e = err(r#"{"type":"continue_run"}"#).to_string();
        assert!(e.contains("run_id"), "{e}");
        let e = err(r#"{"type":"continue_run","run_id":12}"#).to_string();
        assert!(e.contains("invalid `continue_run` message"), "{e}");
    }

    #[test]
    fn tick_slots_must_be_whole_rfc3339_minutes() {
        let e = err(r#"{"type":"tick"}"#).to_string();
        assert!(e.contains("slot"), "{e}");
        let e = err(r#"{"type":"tick","slot":"yesterday"}"#).to_string();
        assert!(e.contains("is not an RFC 3339 time"), "{e}");
        let e = err(r#"{"type":"tick","slot":"2026-11-22T21:13:05Z"}"#).to_string();
        assert!(e.contains("not on a whole minute"), "{e}");
        let e = err(r#"{"type":"tick","slot":"2026-11-22T21:13:00.5Z"}"#).to_string();
        assert!(e.contains("not on a whole minute"), "{e}");
        let e = err(r#"{"type":"tick","slot":"2026-11-22 21:13"}"#).to_string();
        assert!(e.contains("is not an RFC 3339 time"), "{e}");
        // offsets are read as UTC
        let slot: TickSlot = "2026-11-22T22:13:00+01:00".parse().unwrap();
        assert_eq!(slot.to_string(), "2026-11-22T21:13:00Z");
    }

    #[test]
    fn a_key_is_read_and_bad_keys_are_refused_with_the_reason() {
        let body = |key: &str| {
            format!(r#"{{"type":"process_integration","integration_id":"{ID}","key":{key}}}"#)
        };
        assert_eq!(
            Message::decode(&body(r#""order-7""#)),
            Ok(Message::ProcessIntegration {
                integration_id: id(),
                onboarding: false,
                key: Some("order-7".into()),
            })
        );
        assert_eq!(
            Message::decode(&body("null")),
            Ok(Message::process_integration(id(), false))
        );
        let long = format!("\"{}\"", "k".repeat(MAX_KEY_CHARS));
        assert!(Message::decode(&body(&long)).is_ok());
        for (key, says) in [
            (r#""""#.to_owned(), "`key` is empty"),
            (
                format!("\"{}\"", "k".repeat(MAX_KEY_CHARS + 1)),
                "`key` is 201 characters; at most 200",
            ),
            (r#""a\u0000b""#.to_owned(), "control character"),
            (r#""a\nb""#.to_owned(), "control character"),
            ("7".to_owned(), "invalid type"),
        ] {
            let e = err(&body(&key)).to_string();
            assert!(
                e.contains("invalid `process_integration` message") && e.contains(says),
                "{key}: {e}"
            );
        }
    }

    #[test]
    fn slots_know_their_minute_index() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 21, 13, 42).unwrap();
        let slot = TickSlot::containing(at);
        assert_eq!(slot.to_string(), "2026-11-22T21:13:00Z");
        assert_eq!(slot.minute_index(), at.timestamp() / 60);
        assert_eq!(slot.next().minute_index(), slot.minute_index() + 1);
        assert_eq!(slot.trigger_key(), "tick:2026-11-22T21:13:00Z");
        assert!(TickSlot::exact(at).is_err());
        assert_eq!(TickSlot::exact(slot.start()), Ok(slot));
    }
}
