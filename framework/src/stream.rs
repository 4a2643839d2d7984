//! Streams: the units of work of a run, and what processing one produces.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::error::IntegrationError;
use crate::records::{Activity, Member, Operation};

/// A stream an integration asks for: a root stream from `get_streams`, or a child stream from an
/// outcome. Its identifier is unique within the run: a stream asked for twice is stored once.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStream {
    pub identifier: String,
    pub data: Value,
    /// The source the stream reads, whose check window it uses (see [`crate::RunContext::window`]):
    /// `None` keeps its parent's (a root's own identifier).
    pub source: Option<String>,
}

impl NewStream {
    pub fn new(identifier: impl Into<String>, data: Value) -> Self {
        Self {
            identifier: identifier.into(),
            data,
            source: None,
        }
    }

    /// Makes the stream (and what it leads to) a source of its own: its check window moves
    /// forward only when all of it was read successfully. A repository's stars and its issues,
    /// say, found by one root stream.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// A stream whose data is a serializable value of the integration's own type.
    pub fn with<T: Serialize>(
        identifier: impl Into<String>,
        data: &T,
    ) -> Result<Self, IntegrationError> {
        let data = serde_json::to_value(data).map_err(|e| {
            IntegrationError::fatal("stream data does not serialize").with_source(e)
        })?;
        Ok(Self::new(identifier, data))
    }
}

/// A stream as the processor hands it to `process_stream`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub id: Uuid,
    pub run_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub identifier: String,
    /// The identifier of the first page of this stream's pagination chain.
    pub chain_identifier: String,
    /// The source this stream reads (whose check window it uses): its root's identifier, or what
    /// it or an ancestor declared with [`NewStream::source`].
    pub source: String,
    /// The context the integration gave the stream; next pages keep it unchanged.
    pub data: Value,
    /// The page to fetch: `None` for the first page, else the value of the previous outcome's
    /// `next_page`.
    pub page: Option<Value>,
    /// 1 for the first page, 2 for the next…
    pub page_number: u32,
    /// Failures so far.
    pub retries: u32,
}

impl Stream {
    /// The stream's data as the integration's own type.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, IntegrationError> {
        serde_json::from_value(self.data.clone()).map_err(|e| {
            IntegrationError::fatal(format!(
                "stream `{}` has data this integration cannot read",
                self.identifier
            ))
            .with_source(e)
        })
    }

    /// The page token as the integration's own type.
    pub fn page_as<T: DeserializeOwned>(&self) -> Result<Option<T>, IntegrationError> {
        self.page
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| {
                IntegrationError::fatal(format!(
                    "stream `{}` has a page token this integration cannot read",
                    self.identifier
                ))
                .with_source(e)
            })
    }

    /// The identifier of the page after this one, given its token.
    pub fn next_page_identifier(&self, page: &Value) -> String {
        format!("{}#page={}", self.chain_identifier, page)
    }
}

/// What processing one stream produced. Everything in it commits in one transaction together
/// with the stream's new state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamOutcome {
    pub operations: Vec<Operation>,
    /// The last record read (as the integration describes it) and when it happened: given to
    /// `is_processing_finished` and stored with the stream.
    pub last_record: Option<Value>,
    pub last_record_timestamp: Option<DateTime<Utc>>,
    /// Child streams, deduplicated by identifier within the run.
    pub new_streams: Vec<NewStream>,
    /// The token of the next page of this stream. The next page keeps this stream's data.
    pub next_page: Option<Value>,
    /// Commit this outcome, then defer the run for this long.
    pub sleep: Option<Duration>,
}

impl StreamOutcome {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn activity(mut self, activity: Activity) -> Self {
        self.operations.push(Operation::UpsertActivity(activity));
        self
    }

    pub fn activities(mut self, activities: impl IntoIterator<Item = Activity>) -> Self {
        self.operations
            .extend(activities.into_iter().map(Operation::UpsertActivity));
        self
    }

    pub fn member(mut self, member: Member) -> Self {
        self.operations.push(Operation::UpsertMember(member));
        self
    }

    pub fn child(mut self, stream: NewStream) -> Self {
        self.new_streams.push(stream);
        self
    }

    pub fn children(mut self, streams: impl IntoIterator<Item = NewStream>) -> Self {
        self.new_streams.extend(streams);
        self
    }

    pub fn next_page(mut self, page: Value) -> Self {
        self.next_page = Some(page);
        self
    }

    /// The next page's token if there is one (what the pagination helpers of
    /// [`crate::http`] return).
    pub fn next_page_opt(mut self, page: Option<Value>) -> Self {
        if page.is_some() {
            self.next_page = page;
        }
        self
    }

    pub fn last_record(mut self, record: Value, timestamp: Option<DateTime<Utc>>) -> Self {
        self.last_record = Some(record);
        self.last_record_timestamp = timestamp;
        self
    }

    /// The newest activity of the outcome (by `occurred_at`) as its last record: its source id
    /// and when it happened. Unchanged when the outcome has no activity. For lists read oldest
    /// first.
    pub fn newest_activity_as_last_record(self) -> Self {
        self.activity_as_last_record(true)
    }

    /// The oldest activity of the outcome as its last record: for lists read newest first, where
    /// a check stops once a page reaches back before its window.
    pub fn oldest_activity_as_last_record(self) -> Self {
        self.activity_as_last_record(false)
    }

    fn activity_as_last_record(self, newest: bool) -> Self {
        let activities = self.operations.iter().filter_map(|op| match op {
            Operation::UpsertActivity(a) => Some(a),
            Operation::UpsertMember(_) => None,
        });
        let picked = if newest {
            activities.max_by_key(|a| a.occurred_at)
        } else {
            activities.min_by_key(|a| a.occurred_at)
        };
        match picked.map(|a| (Value::String(a.source_id.clone()), a.occurred_at)) {
            Some((record, at)) => self.last_record(record, Some(at)),
            None => self,
        }
    }

    pub fn sleep(mut self, duration: Duration) -> Self {
        self.sleep = Some(duration);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_newest_activity_becomes_the_last_record() {
        let at = |h| {
            Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0)
                .single()
                .unwrap_or_default()
        };
        let activity = |id: &str, h| Activity::new(id, "post", at(h), Member::new("1", "ada"));
        let outcome = StreamOutcome::new()
            .activity(activity("a", 3))
            .member(Member::new("2", "bob"))
            .activity(activity("b", 5))
            .activity(activity("c", 4))
            .newest_activity_as_last_record();
        assert_eq!(outcome.last_record, Some(Value::String("b".into())));
        assert_eq!(outcome.last_record_timestamp, Some(at(5)));
        let oldest = outcome.oldest_activity_as_last_record();
        assert_eq!(oldest.last_record, Some(Value::String("a".into())));
        let empty = StreamOutcome::new().newest_activity_as_last_record();
        assert_eq!(
            (empty.last_record, empty.last_record_timestamp),
            (None, None)
        );
    }
}
