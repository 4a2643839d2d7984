//! What every command needs: the database (migrated) and the registry of integrations.

use std::sync::Arc;

use anyhow::Context as _;
use sqlx::PgPool;
use tokio::sync::OnceCell;
use tributary::Registry;
use tributary::queue::Queue;

pub struct CommandContext {
    pub pool: PgPool,
    pub registry: Arc<Registry>,
    queue: OnceCell<Arc<dyn Queue>>,
}

impl CommandContext {
    /// Connects to `DATABASE_URL`, brings the schema up to date, registers every integration.
    pub async fn from_env() -> anyhow::Result<Self> {
        let keys = tributary::keyring::init_from_env().context("loading the credentials key")?;
        if keys.is_plaintext() {
            tracing::warn!(
                "no {} set: credentials are stored in the clear",
                tributary::keyring::KEY_ENV
            );
        }
        let url = std::env::var("DATABASE_URL")
            .context("DATABASE_URL is not set (the scripts in scripts/ set it for you)")?;
        let pool = tributary::db::connect(&url, 10).await?;
        tributary::db::migrate(&pool)
            .await
            .context("bringing the database schema up to date")?;
        let registry =
            tributary_integrations::registry().context("registering the integrations")?;
        Ok(Self {
            pool,
            registry: Arc::new(registry),
            queue: OnceCell::new(),
        })
    }

    /// The workers' queue (`TRIBUTARY_QUEUE`, postgres by default), connected on first use.
    pub async fn queue(&self) -> anyhow::Result<&Arc<dyn Queue>> {
        self.queue
            .get_or_try_init(|| async {
                tributary::queue::from_env(&self.pool)
                    .await
                    .context("connecting to the workers' queue")
            })
            .await
    }
}
