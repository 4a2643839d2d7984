use std::process::ExitCode;

use clap::Parser;
use tributary_scripts::commands::continue_run::{self, ContinueArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = ContinueArgs::parse();
    tributary_scripts::init_tracing();
    let shutdown = tributary_scripts::shutdown_on_signal();
    match continue_run::run(args, &shutdown).await {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
