//! Writing a processed stream's outcome under the caps of its service.

use std::sync::atomic::Ordering;

use super::Shared;
use crate::error::{ErrorKind, ErrorRecord};
use crate::events;
use crate::records::Operation;
use crate::store::StoreError;
use crate::store::outcomes::{self, Completed, Completion, FinishRun};
use crate::store::streams::{self as stream_store, StreamInsert};
use crate::stream::{Stream, StreamOutcome};
use crate::telemetry;

/// A commit that hits a deadlock or a serialization failure is tried this many times.
const MAX_COMMIT_TRIES: u32 = 3;

/// Writes an outcome: its records, its child streams and next page, the stream processed. A next
/// page that breaks the pagination rules is not followed: the stream's records are kept and the
/// stream ends in `error` saying why. Returns what was written (an outcome refused: nothing), and
/// with `finish` (`postprocess` done) ends the run in the same statement when every other stream
/// is `processed`.
pub(super) async fn commit(
    shared: &Shared,
    stream: &Stream,
    outcome: StreamOutcome,
    finish: Option<FinishRun>,
) -> Result<Committed, StoreError> {
    let credentials = shared.ctx.credentials();
    let StreamOutcome {
        operations,
        last_record,
        last_record_timestamp,
        new_streams,
        next_page,
        sleep: _,
    } = outcome;
    let mut members = Vec::new();
    let mut activities = Vec::new();
    for operation in operations {
        match operation {
            Operation::UpsertMember(m) => members.push(m),
            Operation::UpsertActivity(a) => activities.push(a),
        }
    }
    let mut inserts: Vec<StreamInsert> = new_streams
        .iter()
        .map(|s| StreamInsert::child(stream, s))
        .collect();
    let mut pagination_error = None;
    if let Some(page) = next_page {
        if stream.page.as_ref() == Some(&page) {
            pagination_error = Some(format!(
                "pagination does not advance: the next page of `{}` is the page just fetched ({page})",
                stream.chain_identifier
            ));
        } else if stream.page_number >= shared.config.max_pages_per_stream {
            pagination_error = Some(format!(
                "pagination did not end: `{}` reached {} pages (max_pages_per_stream)",
                stream.chain_identifier, shared.config.max_pages_per_stream
            ));
        } else {
            inserts.push(StreamInsert::next_page(stream, page));
        }
    }
    let wanted_next = inserts.iter().any(|i| i.page.is_some());
    let wanted = inserts.len() as u64;
    // records of the page are kept even when its pagination is broken: the stream then ends in
    // `error` in the same transaction, saying why
    let error = pagination_error.map(|message| processor_error(stream, message));
    let mut completion = Completion {
        stream_id: stream.id,
        scope: &shared.scope,
        members,
        activities,
        new_streams: inserts,
        last_record,
        last_record_timestamp,
        error: error.as_ref(),
        summarize: shared.nothing_due.load(Ordering::SeqCst) || finish.is_some(),
        finish,
    };
    super::super::scrub::completion(credentials, &mut completion);
    if let Some(reason) = over_caps(shared, &completion).await? {
        refuse_outcome(shared, stream, reason).await?;
        return Ok(Committed::refused());
    }
    let mut tries = 0;
    let written = match completion.make_storable() {
        Err(refused) => Err(StoreError::from(refused)),
        Ok(()) => loop {
            tries += 1;
            match outcomes::complete(&shared.pool, &shared.lease, &completion).await {
                Err(e) if e.is_transient() && tries < MAX_COMMIT_TRIES => continue,
                other => break other,
            }
        },
    };
    let completed = match written {
        Ok(completed) => completed,
        Err(e) => match e.unstorable() {
            // this outcome can never be stored: only its stream ends, on this first attempt
            Some(reason) => {
                refuse_outcome(shared, stream, reason).await?;
                return Ok(Committed::refused());
            }
            None => return Err(e),
        },
    };
    if let Some(record) = &completed.cycle {
        events::stream_failed(shared.lease.run_id, &stream.identifier, record, None);
    } else if wanted_next && completed.new_streams < wanted {
        events::next_page_known(shared.lease.run_id, &stream.identifier);
    }
    if let Some(record) = &error {
        events::stream_failed(shared.lease.run_id, &stream.identifier, record, None);
    }
    telemetry::stream_committed(
        shared.ctx.platform(),
        error.is_some(),
        completed.records.activities_created,
        completed.records.activities_updated,
        completed.records.members_created,
    );
    let errored = error.is_some() || completed.cycle.is_some();
    Ok(Committed { completed, errored })
}

/// What committing an outcome did.
pub(super) struct Committed {
    pub completed: Completed,
    /// The stream ended in `error`: its outcome refused, or its pagination broken.
    pub errored: bool,
}

impl Committed {
    fn refused() -> Self {
        Self {
            completed: Completed::default(),
            errored: true,
        }
    }
}

/// Why an outcome is over the service's caps (records per outcome, streams per run), if it is.
async fn over_caps(
    shared: &Shared,
    completion: &Completion<'_>,
) -> Result<Option<String>, StoreError> {
    let records = completion.members.len() + completion.activities.len();
    let max_records = shared.config.max_records_per_outcome;
    if records > max_records {
        return Ok(Some(format!(
            "it has {records} records, over the {max_records} an outcome may have \
             (max_records_per_outcome)"
        )));
    }
    if completion.new_streams.is_empty() {
        return Ok(None);
    }
    let max_streams = shared.config.max_streams_per_run;
    let existing = stream_store::count(&shared.pool, shared.lease.run_id).await?;
    let total = existing.saturating_add(completion.new_streams.len() as u64);
    Ok((total > max_streams).then(|| {
        format!(
            "its {} new stream(s) would give the run {total}, over the {max_streams} a run may \
             have (max_streams_per_run)",
            completion.new_streams.len()
        )
    }))
}

/// An outcome the database cannot store (nothing of it was written): the stream ends in `error`
/// saying which field or SQLSTATE, without retries (the same records would fail again).
async fn refuse_outcome(
    shared: &Shared,
    stream: &Stream,
    reason: String,
) -> Result<(), StoreError> {
    let message = format!(
        "the outcome of `{}` cannot be stored: {reason}",
        stream.identifier
    );
    let record = processor_error(stream, message);
    stream_store::fail(&shared.pool, &shared.lease, stream.id, &record, None).await?;
    events::stream_failed(shared.lease.run_id, &stream.identifier, &record, None);
    Ok(())
}

/// The processor's own reason for ending `stream` in `error` (not retried).
fn processor_error(stream: &Stream, message: String) -> ErrorRecord {
    ErrorRecord {
        kind: ErrorKind::Fatal,
        hook: "processor".to_owned(),
        chain: vec![message.clone()],
        message,
        failures: stream.retries.saturating_add(1),
        at: crate::clock::now(),
    }
}
