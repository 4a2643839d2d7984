use std::process::ExitCode;

use clap::Parser;
use tributary_scripts::bench::checks::{self, ChecksBenchArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = ChecksBenchArgs::parse();
    tributary_scripts::init_tracing();
    match checks::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
