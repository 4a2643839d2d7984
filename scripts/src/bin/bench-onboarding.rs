use std::process::ExitCode;

use clap::Parser;
use tributary_scripts::bench::onboarding::{self, OnboardingBenchArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = OnboardingBenchArgs::parse();
    tributary_scripts::init_tracing();
    match onboarding::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
