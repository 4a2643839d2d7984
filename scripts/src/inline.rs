//! `--inline`: processing a run in the foreground with a progress display, until it ends or is
//! delayed.

use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tributary::processor::{IntegrationProcessor, ProcessorConfig, RunOutcome, default_worker_id};
use tributary::store::{runs, streams};
use uuid::Uuid;

use crate::Exit;
use crate::context::CommandContext;
use crate::progress::{self, ProgressWriter};

/// Processes the run here and now, printing progress; says how it ended.
pub async fn process(
    ctx: &CommandContext,
    run_id: Uuid,
    shutdown: &CancellationToken,
) -> anyhow::Result<Exit> {
    let processor = IntegrationProcessor::new(
        ctx.pool.clone(),
        ctx.registry.clone(),
        ProcessorConfig {
            worker_id: format!("inline-{}", default_worker_id()),
            ..ProcessorConfig::default()
        },
    );
    let mut writer = ProgressWriter::default();
    let work = processor.process_run(run_id, shutdown);
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let outcome = loop {
        tokio::select! {
            outcome = &mut work => break outcome.with_context(|| format!("processing run {run_id}"))?,
            _ = ticker.tick() => {
                if let (Ok(run), Ok(p)) = (runs::get(&ctx.pool, run_id).await, streams::progress(&ctx.pool, run_id).await) {
                    writer.update(progress::line(&run, &p));
                }
            }
        }
    };
    let run = runs::get(&ctx.pool, run_id).await?;
    let p = streams::progress(&ctx.pool, run_id).await?;
    writer.update(progress::line(&run, &p));
    writer.finish();
    Ok(report(run_id, &outcome))
}

/// One line on stdout saying how the run ended; the exit it implies.
pub fn report(run_id: Uuid, outcome: &RunOutcome) -> Exit {
    match outcome {
        RunOutcome::Processed => {
            println!("run {run_id} processed");
            Exit::Ok
        }
        RunOutcome::Failed { message } => {
            println!("run {run_id} ended in error: {message}");
            Exit::RunFailed
        }
        RunOutcome::Delayed { until, reason } => {
            println!(
                "run {run_id} delayed until {} ({reason}); continue it then with continue-run, or let a worker",
                progress::clock(*until)
            );
            Exit::Delayed
        }
        RunOutcome::Released => {
            println!(
                "run {run_id} released (interrupted); its progress is saved: continue it with continue-run"
            );
            Exit::Delayed
        }
        RunOutcome::LeaseLost => {
            println!("run {run_id} was taken over by another worker or cancelled");
            Exit::Delayed
        }
        RunOutcome::NotClaimable {
            state,
            delayed_until,
        } => {
            match delayed_until {
                Some(until) => println!(
                    "run {run_id} is {state} until {}; not processed now",
                    progress::clock(*until)
                ),
                None => println!("run {run_id} is {state}; not processed now"),
            }
            Exit::Delayed
        }
    }
}
