//! Handing a run to the workers instead of processing it here.

use tributary::store::runs::Run;

use crate::context::CommandContext;

/// The run is pending in the store; any worker takes it from there.
pub async fn hand_off(_ctx: &CommandContext, run: &Run) -> anyhow::Result<()> {
    println!("run {} is pending for the workers", run.id);
    Ok(())
}
