use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tributary_scripts::scaffold::{self, Names};

/// Writes a new integration — settings, streams, wire types, a fake platform and a test file that
/// runs the conformance suite — under `integrations/`, and registers it. See
/// docs/writing-an-integration.md for what to do next.
#[derive(Debug, Parser)]
#[command(name = "new-integration")]
struct Args {
    /// The platform's name as stored: lowercase letters, digits and hyphens (`acme-forum`).
    name: String,
    /// The workspace to write into.
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let written = Names::parse(&args.name).and_then(|names| scaffold::write(&args.root, &names));
    match written {
        Ok(files) => {
            for file in files {
                println!("wrote {}", file.display());
            }
            println!(
                "next: `cargo test -p tributary-integrations --test {}`, then docs/writing-an-integration.md",
                args.name.replace('-', "_")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
