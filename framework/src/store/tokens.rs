//! `api_tokens`: the admin API's bearer tokens, kept as SHA-256 digests.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn insert(
    pool: &PgPool,
    id: Uuid,
    name: &str,
    role: &str,
    digest: &str,
) -> Result<TokenRow, StoreError> {
    Ok(sqlx::query_as(
        "INSERT INTO api_tokens (id, name, role, token_sha256) VALUES ($1, $2, $3, $4)
         RETURNING id, name, role, created_at, last_used_at, revoked_at",
    )
    .bind(id)
    .bind(name)
    .bind(role)
    .bind(digest)
    .fetch_one(pool)
    .await?)
}

/// The live token with this digest; notes its use (at most once a minute per token).
pub async fn authenticate(pool: &PgPool, digest: &str) -> Result<Option<TokenRow>, StoreError> {
    Ok(sqlx::query_as(
        "WITH live AS (SELECT * FROM api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL),
              noted AS (UPDATE api_tokens SET last_used_at = now()
                        WHERE id IN (SELECT id FROM live WHERE last_used_at IS NULL
                                     OR last_used_at < now() - interval '1 minute'))
         SELECT id, name, role, created_at, last_used_at, revoked_at FROM live",
    )
    .bind(digest)
    .fetch_optional(pool)
    .await?)
}

/// Revokes a token; `false` when no live token has this id.
pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<bool, StoreError> {
    Ok(
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected()
            == 1,
    )
}

pub async fn list(pool: &PgPool) -> Result<Vec<TokenRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, name, role, created_at, last_used_at, revoked_at FROM api_tokens
         ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await?)
}
