//! Bearer tokens of the admin API: 32 random bytes shown once at creation, stored as a SHA-256
//! digest (a plain digest is enough for random tokens), each read-only or operator.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AdminError;
use crate::store::tokens::{self, TokenRow};

/// Tokens start with this, so that a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "trb_";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads everything (never credentials).
    ReadOnly,
    /// Reads, and steers: connect, disconnect, start, continue and cancel runs, redrive.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read-only",
            Self::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read-only" => Ok(Self::ReadOnly),
            "operator" => Ok(Self::Operator),
            other => Err(format!("unknown role `{other}` (read-only or operator)")),
        }
    }
}

/// A token as listed: never the token itself.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<TokenRow> for TokenInfo {
    type Error = AdminError;
    fn try_from(row: TokenRow) -> Result<Self, AdminError> {
        Ok(Self {
            role: row.role.parse().map_err(AdminError::Refused)?,
            id: row.id,
            name: row.name,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        })
    }
}

/// The SHA-256 of a token, in hex: what is stored.
pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates a token; the returned string is the only time the token is seen.
pub async fn create(
    pool: &PgPool,
    name: &str,
    role: Role,
) -> Result<(TokenInfo, String), AdminError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AdminError::InvalidInput {
            field: "name".into(),
            message: "must not be empty".into(),
        });
    }
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| AdminError::Refused("no randomness for a token".to_owned()))?;
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let row = tokens::insert(pool, Uuid::new_v4(), name, role.as_str(), &digest(&token)).await?;
    Ok((TokenInfo::try_from(row)?, token))
}

/// The live token a request presents, if it is one.
pub async fn authenticate(pool: &PgPool, token: &str) -> Result<Option<TokenInfo>, AdminError> {
    match tokens::authenticate(pool, &digest(token)).await? {
        Some(row) => Ok(Some(TokenInfo::try_from(row)?)),
        None => Ok(None),
    }
}

pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<(), AdminError> {
    if tokens::revoke(pool, id).await? {
        Ok(())
    } else {
        Err(AdminError::UnknownToken(id))
    }
}

pub async fn list(pool: &PgPool) -> Result<Vec<TokenInfo>, AdminError> {
    tokens::list(pool)
        .await?
        .into_iter()
        .map(TokenInfo::try_from)
        .collect()
}
