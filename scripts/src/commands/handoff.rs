//! Handing a run to the workers instead of processing it here.

use anyhow::Context as _;
use tributary::store::runs::Run;

use crate::context::CommandContext;

/// Sends the message that makes a worker process the run (the run is already committed).
pub async fn hand_off(ctx: &CommandContext, run: &Run) -> anyhow::Result<()> {
    let queue = ctx.queue().await?;
    let message = tributary::handoff::enqueue_run(&ctx.pool, queue.as_ref(), run.id)
        .await
        .with_context(|| format!("sending run {} to the workers' queue", run.id))?;
    println!("run {} handed to the workers (message {message})", run.id);
    Ok(())
}
