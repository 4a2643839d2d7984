use std::process::ExitCode;

use clap::Parser;
use tributary_scripts::commands::dispatch::{self, DispatchArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = DispatchArgs::parse();
    tributary::runtime::init_tracing("info,sqlx::query=error");
    let shutdown = tributary_scripts::shutdown_on_signal();
    match dispatch::run(args, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
