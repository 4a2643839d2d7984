//! `tributary-server`: parses its arguments, sets up tracing, handles signals; serves the admin
//! API and dashboard, or manages API tokens.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tributary::admin::tokens::{self, Role};
use tributary::runtime::ShutdownSignals;
use tributary_server::AppState;
use uuid::Uuid;

/// The admin API, the dashboard and /metrics, over the workers' database and queue.
#[derive(Debug, Parser)]
#[command(name = "tributary-server", version)]
struct Args {
    /// PostgreSQL (migrations are applied at start).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
    /// Where to listen (loopback by default: put a TLS proxy in front to expose it).
    #[arg(long, env = "TRIBUTARY_SERVER_ADDR", default_value_t = tributary_server::DEFAULT_ADDR)]
    addr: SocketAddr,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Create a token and print it (the only time it is shown).
    Create {
        #[arg(long)]
        name: String,
        /// read-only or operator.
        #[arg(long, default_value = "read-only")]
        role: Role,
    },
    /// Revoke a token by id.
    Revoke { id: Uuid },
    /// List tokens (never the tokens themselves).
    List,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = tributary::otel::init_tracing_and_export("info,sqlx=warn", "tributary-server");
    let result = run().await;
    telemetry.shutdown().await;
    result
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Openapi) = args.command {
        print!("{}", tributary_server::api::openapi_json());
        return Ok(());
    }
    let url = args
        .database_url
        .context("DATABASE_URL is not set (or pass --database-url)")?;
    let pool = tributary::db::connect(&url, 10).await?;
    tributary::db::migrate(&pool)
        .await
        .context("bringing the database schema up to date")?;
    match args.command {
        Some(Command::Token { action }) => token(&pool, action).await,
        _ => serve(pool, args.addr).await,
    }
}

async fn token(pool: &sqlx::PgPool, action: TokenAction) -> anyhow::Result<()> {
    match action {
        TokenAction::Create { name, role } => {
            let (info, token) = tokens::create(pool, &name, role).await?;
            eprintln!(
                "token {} ({}, {}): shown once, keep it",
                info.id, info.name, info.role
            );
            println!("{token}");
        }
        TokenAction::Revoke { id } => {
            tokens::revoke(pool, id).await?;
            println!("token {id} revoked");
        }
        TokenAction::List => {
            for t in tokens::list(pool).await? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else {
                    "live"
                };
                println!("{}  {:<9}  {:<7}  {}", t.id, t.role, state, t.name);
            }
        }
    }
    Ok(())
}

async fn serve(pool: sqlx::PgPool, addr: SocketAddr) -> anyhow::Result<()> {
    // connecting an integration seals its credentials: the same key as the workers'
    let keys = tributary::keyring::init_from_env().context("loading the credentials key")?;
    tributary::keyring::require_key(keys, tributary::keyring::plaintext_allowed())?;
    let metrics = tributary::telemetry::install().map_err(anyhow::Error::msg)?;
    let registry = tributary_integrations::registry().context("registering the integrations")?;
    let queue = tributary::queue::from_env(&pool)
        .await
        .context("connecting to the workers' queue")?;
    let state = Arc::new(AppState {
        pool,
        registry: Arc::new(registry),
        queue,
        metrics: Some(metrics),
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    // the address actually bound (port 0 picks one), for scripts
    println!("listening on http://{}", listener.local_addr()?);
    let mut signals = ShutdownSignals::listen().context("cannot listen for SIGTERM/SIGINT")?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let name = signals.next().await;
        tracing::info!("{name} received: shutting down");
        stop.cancel();
    });
    tributary_server::serve(listener, state, shutdown)
        .await
        .context("serving")
}
