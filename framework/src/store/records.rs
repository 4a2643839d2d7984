//! `members` and `activities`: bulk upserts keyed by the platform's stable ids. Writing the same
//! records twice changes nothing (not even `updated_at`). Every row a statement creates or changes
//! writes its outbox event (`events`) in that same statement, so an event exists if and only if
//! its change committed, and an unchanged record writes none.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::StoreError;
use crate::records::{Activity, Member};

/// Whose records these are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordScope {
    pub tenant_id: Uuid,
    pub platform: String,
    pub integration_id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpsertCounts {
    pub members_created: u64,
    pub members_updated: u64,
    pub activities_created: u64,
    pub activities_updated: u64,
}

/// Upserts the members (those given and the activities' own) and then the activities, each in one
/// statement. Within a batch, later records with the same id win; a member's missing fields do not
/// erase known ones.
pub async fn upsert(
    conn: &mut PgConnection,
    scope: &RecordScope,
    members: &[Member],
    activities: &[Activity],
) -> Result<UpsertCounts, StoreError> {
    let mut counts = UpsertCounts::default();
    let members = merge_members(members.iter().chain(activities.iter().map(|a| &a.member)));
    if !members.is_empty() {
        (counts.members_created, counts.members_updated) =
            upsert_members(conn, scope, &members).await?;
    }
    let activities = dedupe_activities(activities);
    if !activities.is_empty() {
        (counts.activities_created, counts.activities_updated) =
            upsert_activities(conn, scope, &activities).await?;
    }
    Ok(counts)
}

fn merge_members<'a>(all: impl Iterator<Item = &'a Member>) -> Vec<Member> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut merged: Vec<Member> = Vec::new();
    for member in all {
        match index.get(member.source_id.as_str()) {
            Some(&i) => {
                let known = &mut merged[i];
                known.username.clone_from(&member.username);
                known.display_name = member.display_name.clone().or(known.display_name.take());
                known.url = member.url.clone().or(known.url.take());
                known.joined_at = member.joined_at.or(known.joined_at);
                if let (Value::Object(into), Value::Object(from)) =
                    (&mut known.attributes, &member.attributes)
                {
                    into.extend(from.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            None => {
                index.insert(&member.source_id, merged.len());
                merged.push(member.clone());
            }
        }
    }
    merged
}

fn dedupe_activities(activities: &[Activity]) -> Vec<&Activity> {
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(activities.len());
    for (i, activity) in activities.iter().enumerate() {
        last.insert(&activity.source_id, i);
    }
    activities
        .iter()
        .enumerate()
        .filter(|(i, a)| last.get(a.source_id.as_str()) == Some(i))
        .map(|(_, a)| a)
        .collect()
}

fn object_or_empty(value: &Value) -> Value {
    if value.is_object() {
        value.clone()
    } else {
        Value::Object(Default::default())
    }
}

/// Splits `RETURNING (xmax = 0)` flags into (created, updated).
fn tally(flags: &[bool]) -> (u64, u64) {
    let created = flags.iter().filter(|c| **c).count() as u64;
    (created, flags.len() as u64 - created)
}

async fn upsert_members(
    conn: &mut PgConnection,
    scope: &RecordScope,
    members: &[Member],
) -> Result<(u64, u64), StoreError> {
    let source_ids: Vec<&str> = members.iter().map(|m| m.source_id.as_str()).collect();
    let usernames: Vec<&str> = members.iter().map(|m| m.username.as_str()).collect();
    let names: Vec<Option<&str>> = members.iter().map(|m| m.display_name.as_deref()).collect();
    let urls: Vec<Option<&str>> = members.iter().map(|m| m.url.as_deref()).collect();
    let joined: Vec<Option<DateTime<Utc>>> = members.iter().map(|m| m.joined_at).collect();
    let attributes: Vec<Value> = members
        .iter()
        .map(|m| object_or_empty(&m.attributes))
        .collect();
    // New members first: DO NOTHING takes no lock on existing rows, so concurrent streams that
    // mention the same (unchanged) member never wait for each other.
    // Each statement writes its outbox events (one per row it changed) in the same statement.
    let created = sqlx::query(
        "WITH ins AS (
             INSERT INTO members
                 (tenant_id, platform, integration_id, source_id, username, display_name, url, joined_at, attributes)
             SELECT $1, $2, $3, u.* FROM UNNEST($4::text[], $5::text[], $6::text[], $7::text[],
                                                $8::timestamptz[], $9::jsonb[])
                 AS u(source_id, username, display_name, url, joined_at, attributes)
             -- one lock order for every transaction: concurrent inserts never deadlock
             ORDER BY u.source_id
             ON CONFLICT (tenant_id, platform, source_id) DO NOTHING
             RETURNING *)
         INSERT INTO events (tenant_id, platform, integration_id, event_type, data)
         SELECT tenant_id, platform, integration_id, 'member.created', to_jsonb(ins) FROM ins",
    )
    .bind(scope.tenant_id)
    .bind(&scope.platform)
    .bind(scope.integration_id)
    .bind(&source_ids)
    .bind(&usernames)
    .bind(&names)
    .bind(&urls)
    .bind(&joined)
    .bind(&attributes)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    // Then only the members whose fields changed are updated (and locked). Missing fields keep
    // their known values.
    let updated = sqlx::query(
        "WITH up AS (UPDATE members AS m SET
             username = u.username,
             display_name = coalesce(u.display_name, m.display_name),
             url = coalesce(u.url, m.url),
             joined_at = coalesce(u.joined_at, m.joined_at),
             attributes = m.attributes || u.attributes,
             updated_at = now()
         FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::jsonb[])
             AS u(source_id, username, display_name, url, joined_at, attributes)
         WHERE m.tenant_id = $1 AND m.platform = $2 AND m.source_id = u.source_id
           AND (m.username, m.display_name, m.url, m.joined_at, m.attributes)
               IS DISTINCT FROM
               (u.username, coalesce(u.display_name, m.display_name), coalesce(u.url, m.url),
                coalesce(u.joined_at, m.joined_at), m.attributes || u.attributes)
             RETURNING m.*)
         INSERT INTO events (tenant_id, platform, integration_id, event_type, data)
         SELECT tenant_id, platform, integration_id, 'member.updated', to_jsonb(up) FROM up",
    )
    .bind(scope.tenant_id)
    .bind(&scope.platform)
    .bind(&source_ids)
    .bind(&usernames)
    .bind(&names)
    .bind(&urls)
    .bind(&joined)
    .bind(&attributes)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((created, updated))
}

async fn upsert_activities(
    conn: &mut PgConnection,
    scope: &RecordScope,
    activities: &[&Activity],
) -> Result<(u64, u64), StoreError> {
    let n = activities.len();
    let mut source_ids = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut occurred = Vec::with_capacity(n);
    let mut members = Vec::with_capacity(n);
    let mut parents = Vec::with_capacity(n);
    let mut channels = Vec::with_capacity(n);
    let mut titles = Vec::with_capacity(n);
    let mut bodies = Vec::with_capacity(n);
    let mut urls = Vec::with_capacity(n);
    let mut attributes = Vec::with_capacity(n);
    for a in activities {
        source_ids.push(a.source_id.as_str());
        types.push(a.activity_type.as_str());
        occurred.push(a.occurred_at);
        members.push(a.member.source_id.as_str());
        parents.push(a.source_parent_id.as_deref());
        channels.push(a.channel.as_deref());
        titles.push(a.title.as_deref());
        bodies.push(a.body.as_deref());
        urls.push(a.url.as_deref());
        attributes.push(object_or_empty(&a.attributes));
    }
    let flags: Vec<bool> = sqlx::query_scalar(
        "WITH up AS (INSERT INTO activities AS a
             (tenant_id, platform, integration_id, source_id, activity_type, occurred_at,
              member_source_id, source_parent_id, channel, title, body, url, attributes)
         SELECT $1, $2, $3, u.* FROM UNNEST($4::text[], $5::text[], $6::timestamptz[], $7::text[],
                                            $8::text[], $9::text[], $10::text[], $11::text[],
                                            $12::text[], $13::jsonb[])
             AS u(source_id, activity_type, occurred_at, member_source_id, source_parent_id,
                  channel, title, body, url, attributes)
         ORDER BY u.source_id
         ON CONFLICT (tenant_id, platform, source_id) DO UPDATE SET
             activity_type = EXCLUDED.activity_type, occurred_at = EXCLUDED.occurred_at,
             member_source_id = EXCLUDED.member_source_id,
             source_parent_id = EXCLUDED.source_parent_id, channel = EXCLUDED.channel,
             title = EXCLUDED.title, body = EXCLUDED.body, url = EXCLUDED.url,
             attributes = EXCLUDED.attributes, updated_at = now()
         WHERE (a.activity_type, a.occurred_at, a.member_source_id, a.source_parent_id, a.channel,
                a.title, a.body, a.url, a.attributes)
               IS DISTINCT FROM
               (EXCLUDED.activity_type, EXCLUDED.occurred_at, EXCLUDED.member_source_id,
                EXCLUDED.source_parent_id, EXCLUDED.channel, EXCLUDED.title, EXCLUDED.body,
                EXCLUDED.url, EXCLUDED.attributes)
         RETURNING a.*, (a.xmax = 0) AS created),
         outbox AS (
             INSERT INTO events (tenant_id, platform, integration_id, event_type, channel, data)
             SELECT tenant_id, platform, integration_id,
                    CASE WHEN created THEN 'activity.created' ELSE 'activity.updated' END,
                    channel, to_jsonb(up) - 'created'
             FROM up)
         SELECT created FROM up",
    )
    .bind(scope.tenant_id)
    .bind(&scope.platform)
    .bind(scope.integration_id)
    .bind(&source_ids)
    .bind(&types)
    .bind(&occurred)
    .bind(&members)
    .bind(&parents)
    .bind(&channels)
    .bind(&titles)
    .bind(&bodies)
    .bind(&urls)
    .bind(&attributes)
    .fetch_all(conn)
    .await?;
    Ok(tally(&flags))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_merge_without_erasing_known_fields() {
        let full = Member::new("7", "ada")
            .display_name("Ada")
            .attributes(json!({"a": 1}));
        let partial = Member::new("7", "ada2").attributes(json!({"b": 2}));
        let merged = merge_members([&full, &partial, &Member::new("8", "bob")].into_iter());
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].username, "ada2");
        assert_eq!(merged[0].display_name.as_deref(), Some("Ada"));
        assert_eq!(merged[0].attributes, json!({"a": 1, "b": 2}));
    }

    #[test]
    fn later_activities_with_the_same_id_win() {
        let at = Utc::now();
        let m = Member::new("1", "u");
        let batch = vec![
            Activity::new("x", "post", at, m.clone()).title("first"),
            Activity::new("y", "post", at, m.clone()),
            Activity::new("x", "post", at, m).title("second"),
        ];
        let kept = dedupe_activities(&batch);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[1].title.as_deref(), Some("second"));
    }
}

/// An activity as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredActivity {
    pub id: Uuid,
    pub source_id: String,
    pub activity_type: String,
    pub occurred_at: DateTime<Utc>,
    pub member_source_id: String,
    pub source_parent_id: Option<String>,
    pub channel: Option<String>,
    pub title: Option<String>,
    pub body: Option<String>,
    pub url: Option<String>,
    pub attributes: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A member as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredMember {
    pub id: Uuid,
    pub source_id: String,
    pub username: String,
    pub display_name: Option<String>,
    pub url: Option<String>,
    pub joined_at: Option<DateTime<Utc>>,
    pub attributes: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An integration's activities, oldest first.
pub async fn list_activities(
    pool: &sqlx::PgPool,
    integration_id: Uuid,
) -> Result<Vec<StoredActivity>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, source_id, activity_type, occurred_at, member_source_id, source_parent_id,
                channel, title, body, url, attributes, created_at, updated_at
         FROM activities WHERE integration_id = $1 ORDER BY occurred_at, source_id",
    )
    .bind(integration_id)
    .fetch_all(pool)
    .await?)
}

/// A tenant's members on a platform, by source id.
pub async fn list_members(
    pool: &sqlx::PgPool,
    tenant_id: Uuid,
    platform: &str,
) -> Result<Vec<StoredMember>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, source_id, username, display_name, url, joined_at, attributes, created_at, updated_at
         FROM members WHERE tenant_id = $1 AND platform = $2 ORDER BY source_id",
    )
    .bind(tenant_id)
    .bind(platform)
    .fetch_all(pool)
    .await?)
}

/// How many activities an integration has.
pub async fn count_activities(
    pool: &sqlx::PgPool,
    integration_id: Uuid,
) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM activities WHERE integration_id = $1")
            .bind(integration_id)
            .fetch_one(pool)
            .await?,
    )
}
