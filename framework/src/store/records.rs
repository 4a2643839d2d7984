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

/// Upserts the members (those given and the activities' own) and the activities in one
/// statement. Within a batch, later records with the same id win; a member's missing fields do not
/// erase known ones.
pub async fn upsert(
    conn: &mut PgConnection,
    scope: &RecordScope,
    members: &[Member],
    activities: &[Activity],
) -> Result<UpsertCounts, StoreError> {
    let batch = Batch::new(members, activities);
    if batch.is_empty() {
        return Ok(UpsertCounts::default());
    }
    let row = batch
        .bind(sqlx::query(UPSERT), scope)
        .fetch_one(&mut *conn)
        .await?;
    let (mut counts, missed) = UpsertCounts::from_row(&row)?;
    if missed > 0 {
        counts.members_updated += batch.update_missed(conn, scope).await?;
    }
    Ok(counts)
}

impl UpsertCounts {
    /// The counts of a statement that selected [`upsert_counts!`], and how many members it
    /// missed (`missed`).
    pub(super) fn from_row(row: &sqlx::postgres::PgRow) -> Result<(Self, u64), sqlx::Error> {
        let get = |column: &str| count_in(row, column);
        Ok((
            Self {
                members_created: get("members_created")?,
                members_updated: get("members_updated")?,
                activities_created: get("activities_created")?,
                activities_updated: get("activities_updated")?,
            },
            get("missed_members")?,
        ))
    }
}

/// The count (a `bigint`) in `row`'s column `column`.
pub(super) fn count_in(row: &sqlx::postgres::PgRow, column: &str) -> Result<u64, sqlx::Error> {
    Ok(u64::try_from(sqlx::Row::try_get::<i64, _>(row, column)?).unwrap_or(0))
}

/// An outcome's records as one statement writes them: members merged by id (those given and the
/// activities' own), activities deduplicated by id (the last wins). [`Batch::bind`] binds them
/// as `$1`–`$19` of a statement built from [`upsert_ctes!`].
pub(super) struct Batch<'a> {
    members: Vec<Member>,
    activities: Vec<&'a Activity>,
}

impl<'a> Batch<'a> {
    pub(super) fn new(members: &[Member], activities: &'a [Activity]) -> Self {
        Self {
            members: merge_members(members.iter().chain(activities.iter().map(|a| &a.member))),
            activities: dedupe_activities(activities),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.activities.is_empty()
    }

    /// Binds `$1`–`$19`: the scope, the members' and the activities' columns.
    pub(super) fn bind<'q>(&'q self, query: Query<'q>, scope: &'q RecordScope) -> Query<'q>
    where
        'a: 'q,
    {
        bind_activities(bind_members(query, scope, &self.members), &self.activities)
    }

    /// Binds `$1`–`$9`: the scope and the members' columns.
    pub(super) fn bind_members<'q>(&'q self, query: Query<'q>, scope: &'q RecordScope) -> Query<'q>
    where
        'a: 'q,
    {
        bind_members(query, scope, &self.members)
    }

    /// Updates the members a statement missed (another transaction inserted them after its
    /// snapshot was taken, so its update could not see them), with a fresh snapshot: how many
    /// changed.
    pub(super) async fn update_missed(
        &self,
        conn: &mut PgConnection,
        scope: &RecordScope,
    ) -> Result<u64, StoreError> {
        let row = bind_members(sqlx::query(UPDATE_MEMBERS), scope, &self.members)
            .fetch_one(&mut *conn)
            .await?;
        let updated: i64 = sqlx::Row::try_get(&row, 0)?;
        Ok(u64::try_from(updated).unwrap_or(0))
    }
}

/// Members `$4`–`$9` of scope `$1`–`$3` that are new, inserted (`ins`), when `$gate` (a
/// condition, `true` for none) holds: DO NOTHING takes no lock on existing rows, so concurrent
/// streams that mention the same unchanged member never wait for each other.
macro_rules! members_insert_sql {
    ($gate:literal) => {
        concat!(
            "ins AS (
             INSERT INTO members
                 (tenant_id, platform, integration_id, source_id, username, display_name, url,
                  joined_at, attributes)
             SELECT $1, $2, $3, u.* FROM UNNEST($4::text[], $5::text[], $6::text[], $7::text[],
                                                $8::timestamptz[], $9::jsonb[])
                 AS u(source_id, username, display_name, url, joined_at, attributes)
             WHERE ",
            $gate,
            "
             -- one lock order for every transaction: concurrent inserts never deadlock
             ORDER BY u.source_id
             ON CONFLICT (tenant_id, platform, source_id) DO NOTHING
             RETURNING *)"
        )
    };
}

pub(super) use members_insert_sql;

/// Members `$4`–`$9` of scope `$1`–`$3` whose fields changed, updated (`up`) when `$gate` holds,
/// missing fields keeping their known values (only rows the statement's snapshot sees).
macro_rules! members_update_sql {
    ($gate:literal) => {
        concat!(
            "up AS (
             UPDATE members AS m SET
                 username = u.username,
                 display_name = coalesce(u.display_name, m.display_name),
                 url = coalesce(u.url, m.url),
                 joined_at = coalesce(u.joined_at, m.joined_at),
                 attributes = m.attributes || u.attributes,
                 updated_at = now()
             FROM UNNEST($4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[],
                         $9::jsonb[])
                 AS u(source_id, username, display_name, url, joined_at, attributes)
             WHERE m.tenant_id = $1 AND m.platform = $2 AND m.source_id = u.source_id
               AND (m.username, m.display_name, m.url, m.joined_at, m.attributes)
                   IS DISTINCT FROM
                   (u.username, coalesce(u.display_name, m.display_name), coalesce(u.url, m.url),
                    coalesce(u.joined_at, m.joined_at), m.attributes || u.attributes)
               AND ",
            $gate,
            "
             RETURNING m.*)"
        )
    };
}

pub(super) use members_update_sql;

/// The members and activities of one outcome (`$1`–`$19`, [`Batch::bind`]) and their outbox
/// events (members' first), written when `$gate` (a condition, `true` for none) holds: the CTEs
/// `ins` and `up` (members created and updated), `act` (activities, `created` telling which were
/// new), `missed` (members neither inserted nor seen: another transaction inserted them meanwhile,
/// [`Batch::update_missed`] updates them) and `outbox`. [`upsert_counts!`] selects their counts.
macro_rules! upsert_ctes {
    ($gate:literal) => {
        concat!(
            $crate::store::records::members_insert_sql!($gate),
            ", ",
            $crate::store::records::members_update_sql!($gate),
            ",
     missed AS (
         SELECT count(*) AS n FROM UNNEST($4::text[]) AS s(source_id)
         WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.source_id = s.source_id)
           AND NOT EXISTS (SELECT 1 FROM members m
                           WHERE m.tenant_id = $1 AND m.platform = $2
                             AND m.source_id = s.source_id)),
     act AS (
         INSERT INTO activities AS a
             (tenant_id, platform, integration_id, source_id, activity_type, occurred_at,
              member_source_id, source_parent_id, channel, title, body, url, attributes)
         SELECT $1, $2, $3, u.* FROM UNNEST($10::text[], $11::text[], $12::timestamptz[],
                                            $13::text[], $14::text[], $15::text[], $16::text[],
                                            $17::text[], $18::text[], $19::jsonb[])
             AS u(source_id, activity_type, occurred_at, member_source_id, source_parent_id,
                  channel, title, body, url, attributes)
         WHERE ",
            $gate,
            "
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
         SELECT tenant_id, platform, integration_id, event_type, channel, data FROM (
             SELECT 1 AS o, tenant_id, platform, integration_id, 'member.created' AS event_type,
                    NULL::text AS channel, to_jsonb(ins) AS data FROM ins
             UNION ALL
             SELECT 2, tenant_id, platform, integration_id, 'member.updated', NULL, to_jsonb(up)
             FROM up
             UNION ALL
             SELECT 3, tenant_id, platform, integration_id,
                    CASE WHEN created THEN 'activity.created' ELSE 'activity.updated' END,
                    channel, to_jsonb(act) - 'created'
             FROM act) e
         ORDER BY o
         RETURNING pos)"
        )
    };
}
pub(super) use upsert_ctes;

/// The counts of [`upsert_ctes!`], as [`UpsertCounts::from_row`] reads them.
macro_rules! upsert_counts {
    () => {
        "(SELECT count(*) FROM ins) AS members_created,
         (SELECT count(*) FROM up) AS members_updated,
         (SELECT count(*) FILTER (WHERE created) FROM act) AS activities_created,
         (SELECT count(*) FILTER (WHERE NOT created) FROM act) AS activities_updated,
         (SELECT n FROM missed) AS missed_members"
    };
}
pub(super) use upsert_counts;

/// The `member.updated` events of the members [`members_update_sql!`] updated (`up`).
macro_rules! members_updated_outbox_sql {
    () => {
        "outbox AS (
         INSERT INTO events (tenant_id, platform, integration_id, event_type, data)
         SELECT tenant_id, platform, integration_id, 'member.updated', to_jsonb(up) FROM up
         RETURNING pos)"
    };
}
pub(super) use members_updated_outbox_sql;

/// An outcome's records, unguarded (the caller's transaction holds the guard).
const UPSERT: &str = concat!("WITH ", upsert_ctes!("true"), " SELECT ", upsert_counts!());

/// The update of [`members_update_sql!`] alone, with a fresh snapshot: how many members changed.
const UPDATE_MEMBERS: &str = concat!(
    "WITH ",
    members_update_sql!("true"),
    ", ",
    members_updated_outbox_sql!(),
    " SELECT count(*) FROM up"
);

pub(super) type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds `$1`–`$9`: the scope and the members' columns.
fn bind_members<'q>(query: Query<'q>, scope: &'q RecordScope, members: &'q [Member]) -> Query<'q> {
    let source_ids: Vec<&str> = members.iter().map(|m| m.source_id.as_str()).collect();
    let usernames: Vec<&str> = members.iter().map(|m| m.username.as_str()).collect();
    let names: Vec<Option<&str>> = members.iter().map(|m| m.display_name.as_deref()).collect();
    let urls: Vec<Option<&str>> = members.iter().map(|m| m.url.as_deref()).collect();
    let joined: Vec<Option<DateTime<Utc>>> = members.iter().map(|m| m.joined_at).collect();
    let attributes: Vec<Value> = members
        .iter()
        .map(|m| object_or_empty(&m.attributes))
        .collect();
    query
        .bind(scope.tenant_id)
        .bind(scope.platform.as_str())
        .bind(scope.integration_id)
        .bind(source_ids)
        .bind(usernames)
        .bind(names)
        .bind(urls)
        .bind(joined)
        .bind(attributes)
}

/// Binds `$10`–`$19`: the activities' columns.
fn bind_activities<'q>(query: Query<'q>, activities: &[&'q Activity]) -> Query<'q> {
    let source_ids: Vec<&str> = activities.iter().map(|a| a.source_id.as_str()).collect();
    let types: Vec<&str> = activities
        .iter()
        .map(|a| a.activity_type.as_str())
        .collect();
    let occurred: Vec<DateTime<Utc>> = activities.iter().map(|a| a.occurred_at).collect();
    let members: Vec<&str> = activities
        .iter()
        .map(|a| a.member.source_id.as_str())
        .collect();
    let parents: Vec<Option<&str>> = activities
        .iter()
        .map(|a| a.source_parent_id.as_deref())
        .collect();
    let channels: Vec<Option<&str>> = activities.iter().map(|a| a.channel.as_deref()).collect();
    let titles: Vec<Option<&str>> = activities.iter().map(|a| a.title.as_deref()).collect();
    let bodies: Vec<Option<&str>> = activities.iter().map(|a| a.body.as_deref()).collect();
    let urls: Vec<Option<&str>> = activities.iter().map(|a| a.url.as_deref()).collect();
    let attributes: Vec<Value> = activities
        .iter()
        .map(|a| object_or_empty(&a.attributes))
        .collect();
    query
        .bind(source_ids)
        .bind(types)
        .bind(occurred)
        .bind(members)
        .bind(parents)
        .bind(channels)
        .bind(titles)
        .bind(bodies)
        .bind(urls)
        .bind(attributes)
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
