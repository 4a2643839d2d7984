use std::process::ExitCode;

use clap::Parser;
use tributary_scripts::bench::{self, BenchArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = BenchArgs::parse();
    tributary_scripts::init_tracing();
    match bench::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
