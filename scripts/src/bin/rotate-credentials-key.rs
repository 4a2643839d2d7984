use std::process::ExitCode;

use clap::Parser;
use tributary_scripts::commands::rotate_key::{self, RotateArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = RotateArgs::parse();
    tributary_scripts::init_tracing();
    match rotate_key::run(args).await {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
