use std::process::ExitCode;

use clap::Parser;
use tributary_scripts::commands::connect::{self, ConnectArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = ConnectArgs::parse();
    tributary_scripts::init_tracing();
    let shutdown = tributary_scripts::shutdown_on_signal();
    match connect::run(args, &shutdown).await {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
