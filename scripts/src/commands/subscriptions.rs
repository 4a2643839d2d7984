//! `subscriptions`: create, list, pause, resume, delete subscriptions, rotate their secrets,
//! replay their events and redrive their dead letters (tributary::subscriptions underneath).

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use tributary::delivery::parse_duration;
use tributary::secret::Secret;
use tributary::store::subscriptions::{ReplayFrom, Subscription};
use tributary::subscriptions::{self, SubscriptionError, SubscriptionRequest, Target};
use uuid::Uuid;

use crate::Exit;

/// Manage the subscriptions that receive Tributary's events (docs/events.md).
#[derive(Debug, Parser)]
#[command(
    name = "subscriptions",
    after_help = "Exit codes: 0 done, 2 refused (unknown id, invalid request)."
)]
pub struct SubscriptionsArgs {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a subscription; prints its id and, for a webhook, its signing secret (shown once).
    Create(Box<CreateArgs>),
    /// List subscriptions (secrets are never shown).
    List {
        #[arg(long)]
        tenant: Option<Uuid>,
    },
    /// Stop delivering (events keep accumulating past the cursor).
    Pause {
        id: Uuid,
    },
    /// Deliver again, the head batch at once with a fresh retry count.
    Resume {
        id: Uuid,
    },
    Delete {
        id: Uuid,
    },
    /// A new signing secret; the old one stays valid for --overlap.
    RotateSecret {
        id: Uuid,
        /// The new secret (`whsec_…`); generated if absent.
        #[arg(long, env = "TRIBUTARY_NEW_SIGNING_SECRET", hide_env_values = true)]
        secret: Option<String>,
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        overlap: Duration,
    },
    /// Deliver the subscription's events again from a sequence number or a time (RFC 3339).
    Replay {
        id: Uuid,
        #[arg(
            long,
            conflicts_with = "from_time",
            required_unless_present = "from_time"
        )]
        from_seq: Option<i64>,
        #[arg(long)]
        from_time: Option<DateTime<Utc>>,
    },
    /// Deliver the subscription's dead letters again.
    Redrive {
        id: Uuid,
    },
    /// The subscription's dead letters, with the last answer each got.
    DeadLetters {
        id: Uuid,
    },
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub tenant: Uuid,
    #[arg(long)]
    pub name: String,
    /// An HTTPS endpoint (plain http only on 127.0.0.1/localhost).
    #[arg(
        long,
        conflicts_with = "sqs_queue_url",
        required_unless_present = "sqs_queue_url"
    )]
    pub url: Option<String>,
    /// Signing secret (`whsec_` + base64); generated if absent.
    #[arg(long, env = "TRIBUTARY_SIGNING_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    #[arg(long)]
    pub sqs_queue_url: Option<String>,
    /// Filters, comma-separated; absent: everything.
    #[arg(long, value_delimiter = ',')]
    pub platforms: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    pub event_types: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    pub integrations: Vec<Uuid>,
    #[arg(long, value_delimiter = ',')]
    pub channels: Vec<String>,
    #[arg(long, default_value_t = 100)]
    pub batch_size: u32,
    /// How long a short batch waits for more events (e.g. 500ms).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub linger: Duration,
    /// Deliver each event no sooner than this after it happened.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub delay: Duration,
    /// A digest: one delivery per interval (e.g. 1h) of up to --batch-size events.
    #[arg(long, value_parser = parse_duration)]
    pub digest_every: Option<Duration>,
}

pub async fn run(args: SubscriptionsArgs, pool: &sqlx::PgPool) -> anyhow::Result<Exit> {
    match execute(args.command, pool).await {
        Ok(()) => Ok(Exit::Ok),
        Err(SubscriptionError::Store(tributary::store::StoreError::Database(e))) => {
            Err(anyhow::Error::new(e).context("database error"))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(Exit::Refused)
        }
    }
}

async fn execute(command: Command, pool: &sqlx::PgPool) -> Result<(), SubscriptionError> {
    match command {
        Command::Create(args) => create(*args, pool).await?,
        Command::List { tenant } => {
            for sub in subscriptions::list(pool, tenant).await? {
                println!("{}", describe(&sub));
            }
        }
        Command::Pause { id } => {
            subscriptions::pause(pool, id).await?;
            println!("subscription {id} paused");
        }
        Command::Resume { id } => {
            subscriptions::resume(pool, id).await?;
            println!("subscription {id} resumed");
        }
        Command::Delete { id } => {
            subscriptions::delete(pool, id).await?;
            println!("subscription {id} deleted");
        }
        Command::RotateSecret {
            id,
            secret,
            overlap,
        } => {
            let secret =
                subscriptions::rotate_secret(pool, id, secret.map(Secret::new), overlap).await?;
            println!(
                "subscription {id}: new signing secret {} (the previous one stays valid for {overlap:?})",
                secret.expose()
            );
        }
        Command::Replay {
            id,
            from_seq,
            from_time,
        } => {
            let from = match (from_seq, from_time) {
                (Some(seq), _) => ReplayFrom::Seq(seq),
                (None, Some(at)) => ReplayFrom::Time(at),
                (None, None) => {
                    return Err(SubscriptionError::Invalid(
                        "give --from-seq or --from-time".into(),
                    ));
                }
            };
            let cursor = subscriptions::replay(pool, id, from).await?;
            println!("subscription {id}: delivering again after seq {cursor}");
        }
        Command::Redrive { id } => {
            let n = subscriptions::redrive(pool, id).await?;
            println!("subscription {id}: {n} dead letter(s) queued for delivery");
        }
        Command::DeadLetters { id } => {
            for d in subscriptions::dead_letters(pool, id).await? {
                println!(
                    "seq {} event {} {} after {} attempt(s): {} {}",
                    d.seq,
                    d.event_id,
                    d.state,
                    d.attempts,
                    d.last_status
                        .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                    d.last_error.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

async fn create(args: CreateArgs, pool: &sqlx::PgPool) -> Result<(), SubscriptionError> {
    let target = match (args.url, args.sqs_queue_url) {
        (Some(url), _) => Target::Webhook {
            url,
            secret: args.secret.map(Secret::new),
        },
        (None, Some(queue_url)) => Target::Sqs { queue_url },
        (None, None) => {
            return Err(SubscriptionError::Invalid(
                "give --url or --sqs-queue-url".into(),
            ));
        }
    };
    let mut request = SubscriptionRequest::new(args.tenant, args.name, target);
    request.platforms = args.platforms;
    request.event_types = args.event_types;
    request.integration_ids = args.integrations;
    request.channels = args.channels;
    request.batch_size = args.batch_size;
    request.linger = args.linger;
    request.delay = args.delay;
    request.digest_every = args.digest_every;
    let created = subscriptions::create(pool, request).await?;
    println!("subscription {} created", created.subscription.id);
    if let Some(secret) = created.secret {
        println!("signing secret: {} (shown once)", secret.expose());
    }
    Ok(())
}

fn list_or_all(values: &[String]) -> String {
    if values.is_empty() {
        "*".to_owned()
    } else {
        values.join(",")
    }
}

fn describe(sub: &Subscription) -> String {
    let mut line = format!(
        "{} tenant {} '{}' {} {} {} platforms={} types={} channels={} integrations={} cursor={} delivered={} failures={}",
        sub.id,
        sub.tenant_id,
        sub.name,
        sub.state,
        sub.target_kind,
        sub.target_url,
        list_or_all(&sub.platforms),
        list_or_all(&sub.event_types),
        list_or_all(&sub.channels),
        sub.integration_ids.len(),
        sub.cursor_seq,
        sub.delivered_count,
        sub.failures
    );
    if let Some(reason) = &sub.paused_reason {
        line.push_str(&format!(" paused: {reason}"));
    }
    if let Some(error) = &sub.last_error {
        line.push_str(&format!(" last error: {error}"));
    }
    line
}

/// Connects (DATABASE_URL, migrated) and runs the command.
pub async fn main(args: SubscriptionsArgs) -> anyhow::Result<Exit> {
    let url = std::env::var("DATABASE_URL")
        .context("DATABASE_URL is not set (the scripts in scripts/ set it for you)")?;
    let pool = tributary::db::connect(&url, 2).await?;
    tributary::db::migrate(&pool)
        .await
        .context("bringing the database schema up to date")?;
    run(args, &pool).await
}
