//! What every command needs: the database (migrated) and the registry of integrations.

use std::sync::Arc;

use anyhow::Context as _;
use sqlx::PgPool;
use tributary::Registry;

pub struct CommandContext {
    pub pool: PgPool,
    pub registry: Arc<Registry>,
}

impl CommandContext {
    /// Connects to `DATABASE_URL`, brings the schema up to date, registers every integration.
    pub async fn from_env() -> anyhow::Result<Self> {
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
        })
    }
}
