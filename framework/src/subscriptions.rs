//! Managing subscriptions: the one implementation behind the operator commands
//! (`scripts/subscriptions`) and the admin API. Requests are validated here; secrets are shown
//! once, when created or rotated, never listed, and stored sealed with the credentials key
//! ([`crate::keyring`]).

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::delivery::signature;
use crate::secret::Secret;
use crate::store::StoreError;
use crate::store::events::types;
use crate::store::subscriptions::{self as store, NewSubscription, ReplayFrom, Subscription};

pub use store::DeadLetter;

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a signing secret cannot be sealed or opened")]
    Key(#[from] crate::keyring::KeyError),
}

/// A signing secret as stored: sealed with the process's credentials key (bound to the
/// subscription's id) as credentials are, or in the clear without a key; JSON text.
fn seal_secret(id: Uuid, secret: &Secret) -> Result<String, SubscriptionError> {
    let sealed =
        crate::keyring::current().seal(id, &serde_json::json!({ "secret": secret.expose() }))?;
    Ok(sealed.to_string())
}

fn open_secret(id: Uuid, stored: &str) -> Result<String, SubscriptionError> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(stored) else {
        return Ok(stored.to_owned());
    };
    let opened = crate::keyring::current().open(id, &value)?;
    opened["secret"].as_str().map(str::to_owned).ok_or_else(|| {
        invalid(format!(
            "subscription {id}: its stored signing secret has no `secret`"
        ))
    })
}

/// The secrets a delivery to this subscription is signed with (current first), opened.
pub async fn signing_secrets(pool: &PgPool, id: Uuid) -> Result<Vec<String>, SubscriptionError> {
    store::signing_secrets(pool, id)
        .await?
        .iter()
        .map(|stored| open_secret(id, stored))
        .collect()
}

/// Where a subscription's events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An HTTPS endpoint (plain HTTP only on loopback, for local receivers). Without a secret, one
    /// is generated.
    Webhook { url: String, secret: Option<Secret> },
    /// An SQS queue URL.
    Sqs { queue_url: String },
}

/// What a new subscription receives and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRequest {
    pub tenant_id: Uuid,
    pub name: String,
    /// Empty lists match everything.
    pub platforms: Vec<String>,
    pub event_types: Vec<String>,
    pub integration_ids: Vec<Uuid>,
    pub channels: Vec<String>,
    pub target: Target,
    pub batch_size: u32,
    pub linger: Duration,
    /// Each event is delivered no sooner than this after it committed.
    pub delay: Duration,
    /// A digest: at most one delivery per interval, of up to `batch_size` events.
    pub digest_every: Option<Duration>,
}

impl SubscriptionRequest {
    pub fn new(tenant_id: Uuid, name: impl Into<String>, target: Target) -> Self {
        Self {
            tenant_id,
            name: name.into(),
            platforms: Vec::new(),
            event_types: Vec::new(),
            integration_ids: Vec::new(),
            channels: Vec::new(),
            target,
            batch_size: 100,
            linger: Duration::ZERO,
            delay: Duration::ZERO,
            digest_every: None,
        }
    }
}

/// A created subscription and, for a webhook, its signing secret (shown this once).
#[derive(Debug, Clone)]
pub struct Created {
    pub subscription: Subscription,
    pub secret: Option<Secret>,
}

fn invalid(message: impl Into<String>) -> SubscriptionError {
    SubscriptionError::Invalid(message.into())
}

fn secs(d: Duration, what: &str) -> Result<i32, SubscriptionError> {
    i32::try_from(d.as_secs()).map_err(|_| invalid(format!("{what} is too long")))
}

/// Checks a webhook URL: https, or http on a loopback host.
pub fn validate_webhook_url(url: &str) -> Result<(), SubscriptionError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| invalid(format!("the endpoint `{url}` is not a URL: {e}")))?;
    let loopback = matches!(
        parsed.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    );
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        scheme => Err(invalid(format!(
            "the endpoint must be https (plain http only on 127.0.0.1/localhost), not {scheme}://"
        ))),
    }
}

fn validate(request: &SubscriptionRequest) -> Result<(), SubscriptionError> {
    if request.name.trim().is_empty() {
        return Err(invalid("a subscription needs a name"));
    }
    if !(1..=10_000).contains(&request.batch_size) {
        return Err(invalid("the batch size must be between 1 and 10000"));
    }
    if let Some(unknown) = request
        .event_types
        .iter()
        .find(|t| !types::ALL.contains(&t.as_str()))
    {
        return Err(invalid(format!(
            "unknown event type `{unknown}` (known: {})",
            types::ALL.join(", ")
        )));
    }
    if request.digest_every == Some(Duration::ZERO) {
        return Err(invalid("a digest interval must be longer than zero"));
    }
    match &request.target {
        Target::Webhook { url, secret } => {
            validate_webhook_url(url)?;
            if let Some(secret) = secret {
                signature::validate_secret(secret.expose()).map_err(|e| invalid(e.to_string()))?;
            }
        }
        Target::Sqs { queue_url } => {
            let parsed = reqwest::Url::parse(queue_url)
                .map_err(|e| invalid(format!("the queue `{queue_url}` is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "https" | "http") {
                return Err(invalid("an SQS queue is given by its URL"));
            }
        }
    }
    Ok(())
}

/// Creates a subscription; it receives the events committed from now on.
pub async fn create(
    pool: &PgPool,
    request: SubscriptionRequest,
) -> Result<Created, SubscriptionError> {
    validate(&request)?;
    let (kind, url, secret) = match request.target {
        Target::Webhook { url, secret } => (
            "webhook",
            url,
            Some(secret.unwrap_or_else(signature::generate_secret)),
        ),
        Target::Sqs { queue_url } => ("sqs", queue_url, None),
    };
    let id = Uuid::new_v4();
    let stored_secret = secret.as_ref().map(|s| seal_secret(id, s)).transpose()?;
    let new = NewSubscription {
        id,
        tenant_id: request.tenant_id,
        name: request.name,
        platforms: request.platforms,
        event_types: request.event_types,
        integration_ids: request.integration_ids,
        channels: request.channels,
        target_kind: kind,
        target_url: url,
        secret: stored_secret,
        batch_size: i32::try_from(request.batch_size).unwrap_or(100),
        linger_ms: i32::try_from(request.linger.as_millis())
            .map_err(|_| invalid("the linger is too long"))?,
        delay_secs: secs(request.delay, "the delay")?,
        digest_secs: request
            .digest_every
            .map(|d| secs(d, "the digest interval"))
            .transpose()?,
    };
    let subscription = store::create(pool, &new).await?;
    Ok(Created {
        subscription,
        secret,
    })
}

pub async fn list(
    pool: &PgPool,
    tenant_id: Option<Uuid>,
) -> Result<Vec<Subscription>, SubscriptionError> {
    Ok(store::list(pool, tenant_id).await?)
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Subscription, SubscriptionError> {
    Ok(store::get(pool, id).await?)
}

pub async fn pause(pool: &PgPool, id: Uuid) -> Result<(), SubscriptionError> {
    Ok(store::pause(pool, id, "paused by an operator").await?)
}

pub async fn resume(pool: &PgPool, id: Uuid) -> Result<(), SubscriptionError> {
    Ok(store::resume(pool, id).await?)
}

pub async fn delete(pool: &PgPool, id: Uuid) -> Result<(), SubscriptionError> {
    Ok(store::delete(pool, id).await?)
}

/// Gives a webhook subscription a new secret (generated unless given); the old one stays valid
/// for `overlap`. Returns the new secret (shown this once).
pub async fn rotate_secret(
    pool: &PgPool,
    id: Uuid,
    secret: Option<Secret>,
    overlap: Duration,
) -> Result<Secret, SubscriptionError> {
    let secret = secret.unwrap_or_else(signature::generate_secret);
    signature::validate_secret(secret.expose()).map_err(|e| invalid(e.to_string()))?;
    let sub = store::get(pool, id).await?;
    if sub.target_kind != "webhook" {
        return Err(invalid(format!(
            "subscription {id} delivers to {}: only webhooks have a signing secret",
            sub.target_kind
        )));
    }
    store::rotate_secret(pool, id, &seal_secret(id, &secret)?, overlap).await?;
    Ok(secret)
}

/// Delivers a subscription's events again from `from`. Returns the new cursor.
pub async fn replay(pool: &PgPool, id: Uuid, from: ReplayFrom) -> Result<i64, SubscriptionError> {
    if let ReplayFrom::Seq(seq) = from
        && seq < 1
    {
        return Err(invalid("sequence numbers start at 1"));
    }
    Ok(store::replay(pool, id, from).await?)
}

/// Queues a subscription's dead letters for delivery again. Returns how many.
pub async fn redrive(pool: &PgPool, id: Uuid) -> Result<u64, SubscriptionError> {
    Ok(store::redrive(pool, id).await?)
}

pub async fn dead_letters(pool: &PgPool, id: Uuid) -> Result<Vec<DeadLetter>, SubscriptionError> {
    store::get(pool, id).await?;
    Ok(store::dead_letters(pool, id).await?)
}
