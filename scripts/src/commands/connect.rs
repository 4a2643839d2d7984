//! `connect-integration`: validates settings through the integration, creates the integration and
//! its onboarding run.

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tributary::Credentials;
use tributary::admin::{self, ConnectRequest, DEFAULT_TENANT};
use uuid::Uuid;

use super::{handoff, parse_json, refused};
use crate::context::CommandContext;
use crate::{EXIT_CODES, Exit, inline};

/// Connect an integration: validate its settings, create it and its onboarding run.
#[derive(Debug, Parser)]
#[command(name = "connect-integration", after_help = EXIT_CODES)]
pub struct ConnectArgs {
    /// The platform, e.g. `example-forum`, `devto`, `github`.
    #[arg(long, short = 'p')]
    pub platform: String,
    /// The integration's settings as JSON, e.g. '{"base_url":"http://127.0.0.1:8090"}'.
    #[arg(long, short = 's')]
    pub settings: String,
    /// Credentials as JSON, e.g. '{"token":"…"}'. Prefer the environment variable: command
    /// lines are visible to other users.
    #[arg(
        long,
        env = "TRIBUTARY_CREDENTIALS",
        hide_env_values = true,
        default_value = "{}"
    )]
    pub credentials: String,
    /// The tenant owning the integration.
    #[arg(long, short = 't', default_value_t = DEFAULT_TENANT)]
    pub tenant: Uuid,
    /// Process the onboarding here, with a progress display, until it ends or is delayed.
    #[arg(long)]
    pub inline: bool,
}

pub async fn run(args: ConnectArgs, shutdown: &CancellationToken) -> anyhow::Result<Exit> {
    let settings = match parse_json("--settings", &args.settings) {
        Ok(v) => v,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(Exit::Refused);
        }
    };
    let credentials = match parse_json("--credentials", &args.credentials) {
        Ok(v) if v.is_object() => Credentials::new(v),
        Ok(_) => {
            eprintln!("error: --credentials must be a JSON object");
            return Ok(Exit::Refused);
        }
        // the message of a JSON error quotes no input: safe to print for credentials
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(Exit::Refused);
        }
    };
    let ctx = CommandContext::from_env().await?;
    let request = ConnectRequest {
        tenant_id: args.tenant,
        platform: args.platform,
        settings,
        credentials,
    };
    let (integration, run) = match admin::connect(&ctx.pool, &ctx.registry, request).await {
        Ok(created) => created,
        Err(e) => return refused(e),
    };
    println!("integration {}", integration.id);
    println!("run {}", run.id);
    if args.inline {
        inline::process(&ctx, run.id, shutdown).await
    } else {
        handoff::hand_off(&ctx, &run).await?;
        Ok(Exit::Ok)
    }
}
