//! Secrets kept out of everything a run stores: records, streams (roots, children, next pages,
//! their identifiers and data), last records, pipeline data and settings written by hooks. Only
//! the credentials' secret fields are scrubbed; plain ones (a username) are data.

use serde_json::Value;

use crate::records::{Activity, Member};
use crate::secret::Credentials;
use crate::store::outcomes::Completion;
use crate::stream::NewStream;

fn opt(credentials: &Credentials, text: &mut Option<String>) {
    if let Some(text) = text {
        credentials.scrub_in_place(text);
    }
}

fn member(credentials: &Credentials, m: &mut Member) {
    credentials.scrub_in_place(&mut m.source_id);
    credentials.scrub_in_place(&mut m.username);
    opt(credentials, &mut m.display_name);
    opt(credentials, &mut m.url);
    credentials.scrub_value(&mut m.attributes);
}

fn activity(credentials: &Credentials, a: &mut Activity) {
    credentials.scrub_in_place(&mut a.source_id);
    credentials.scrub_in_place(&mut a.activity_type);
    member(credentials, &mut a.member);
    opt(credentials, &mut a.source_parent_id);
    opt(credentials, &mut a.channel);
    opt(credentials, &mut a.title);
    opt(credentials, &mut a.body);
    opt(credentials, &mut a.url);
    credentials.scrub_value(&mut a.attributes);
}

/// Scrubs an outcome before it is committed.
pub(super) fn completion(credentials: &Credentials, c: &mut Completion<'_>) {
    if !credentials.has_secrets() {
        return;
    }
    c.members.iter_mut().for_each(|m| member(credentials, m));
    c.activities
        .iter_mut()
        .for_each(|a| activity(credentials, a));
    for insert in &mut c.new_streams {
        credentials.scrub_in_place(&mut insert.identifier);
        credentials.scrub_in_place(&mut insert.chain_identifier);
        credentials.scrub_in_place(&mut insert.source);
        credentials.scrub_value(&mut insert.data);
        if let Some(page) = &mut insert.page {
            credentials.scrub_value(page);
        }
    }
    if let Some(record) = &mut c.last_record {
        credentials.scrub_value(record);
    }
}

/// Scrubs the root streams `get_streams` returned.
pub(super) fn roots(credentials: &Credentials, roots: &mut [NewStream]) {
    if !credentials.has_secrets() {
        return;
    }
    for root in roots {
        credentials.scrub_in_place(&mut root.identifier);
        if let Some(source) = &mut root.source {
            credentials.scrub_in_place(source);
        }
        credentials.scrub_value(&mut root.data);
    }
}

/// A scrubbed copy of a value a hook wrote (pipeline data, settings).
pub(super) fn value(credentials: &Credentials, value: &Value) -> Value {
    let mut copy = value.clone();
    if credentials.has_secrets() {
        credentials.scrub_value(&mut copy);
    }
    copy
}
