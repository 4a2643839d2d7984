use std::process::ExitCode;

use clap::Parser;
use tributary_scripts::bench::github::{self, GithubBenchArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = GithubBenchArgs::parse();
    tributary_scripts::init_tracing();
    match github::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
