use std::process::ExitCode;

use clap::Parser;
use tributary_scripts::commands::process::{self, ProcessArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = ProcessArgs::parse();
    tributary_scripts::init_tracing();
    let shutdown = tributary_scripts::shutdown_on_signal();
    match process::run(args, &shutdown).await {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
