use std::process::ExitCode;

use clap::Parser;
use tributary_scripts::commands::subscriptions::{self, SubscriptionsArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = SubscriptionsArgs::parse();
    tributary_scripts::init_tracing();
    match subscriptions::main(args).await {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
