use std::process::ExitCode;

use clap::Parser;
use tributary_scripts::bench::events::{self, EventsBenchArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = EventsBenchArgs::parse();
    tributary_scripts::init_tracing();
    match events::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
