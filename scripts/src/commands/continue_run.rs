//! `continue-run`: resumes runs, giving errored, pending and delayed streams a new chance.

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tributary::admin;
use uuid::Uuid;

use super::{handoff, refused, worst};
use crate::context::CommandContext;
use crate::{EXIT_CODES, Exit, inline};

/// Resume runs: errored streams get a new chance (retries reset), waiting ones are due at once.
#[derive(Debug, Parser)]
#[command(name = "continue-run", after_help = EXIT_CODES)]
pub struct ContinueArgs {
    /// Run ids, comma-separated.
    #[arg(long = "run", short = 'r', required = true, value_delimiter = ',')]
    pub runs: Vec<Uuid>,
    /// Process the runs here, one after the other, with a progress display.
    #[arg(long)]
    pub inline: bool,
}

pub async fn run(args: ContinueArgs, shutdown: &CancellationToken) -> anyhow::Result<Exit> {
    let ctx = CommandContext::from_env().await?;
    let mut exit = Exit::Ok;
    for run_id in args.runs {
        let (run, revived) = match admin::continue_run(&ctx.pool, run_id).await {
            Ok(resumed) => resumed,
            Err(e) => {
                exit = worst(exit, refused(e)?);
                continue;
            }
        };
        println!(
            "run {run_id} resumed: {} errored stream(s) revived, {} waiting stream(s) due now",
            revived.errored, revived.waiting
        );
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
