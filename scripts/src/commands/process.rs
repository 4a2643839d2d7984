//! `process-integration`: starts a run (onboarding with `-o`, a check otherwise) for each
//! integration.

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tributary::admin;
use uuid::Uuid;

use super::{handoff, refused, worst};
use crate::context::CommandContext;
use crate::{EXIT_CODES, Exit, inline};

/// Start a run for each integration: a check (new data only), or an onboarding with -o.
#[derive(Debug, Parser)]
#[command(name = "process-integration", after_help = EXIT_CODES)]
pub struct ProcessArgs {
    /// Integration ids, comma-separated.
    #[arg(
        long = "integration",
        short = 'i',
        required = true,
        value_delimiter = ','
    )]
    pub integrations: Vec<Uuid>,
    /// Refuse integrations of any other platform.
    #[arg(long, short = 'p')]
    pub platform: Option<String>,
    /// Onboarding: read the platform's whole history.
    #[arg(long, short = 'o')]
    pub onboarding: bool,
    /// Process the runs here, one after the other, with a progress display.
    #[arg(long)]
    pub inline: bool,
}

pub async fn run(args: ProcessArgs, shutdown: &CancellationToken) -> anyhow::Result<Exit> {
    let ctx = CommandContext::from_env().await?;
    let mut exit = Exit::Ok;
    for integration in args.integrations {
        let started = admin::start_run(
            &ctx.pool,
            &ctx.registry,
            integration,
            args.onboarding,
            args.platform.as_deref(),
        )
        .await;
        let run = match started {
            Ok(run) => run,
            Err(e) => {
                exit = worst(exit, refused(e)?);
                continue;
            }
        };
        println!("run {} started for integration {integration}", run.id);
        if args.inline {
            if shutdown.is_cancelled() {
                break;
            }
            exit = worst(exit, inline::process(&ctx, run.id, shutdown).await?);
        } else {
            handoff::hand_off(&ctx, &run).await?;
        }
    }
    Ok(exit)
}
