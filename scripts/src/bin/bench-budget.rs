use std::process::ExitCode;

use clap::Parser;
use tributary_scripts::bench::budget::{self, BudgetBenchArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = BudgetBenchArgs::parse();
    tributary_scripts::init_tracing();
    match budget::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
