use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tributary_scripts::init_tracing();
    let shutdown = tributary_scripts::shutdown_on_signal();
    match tributary_scripts::demo::run(&shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
