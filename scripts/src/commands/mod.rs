//! The operator commands, one module each.

pub mod connect;
pub mod continue_run;
pub mod handoff;
pub mod process;
pub mod rotate_key;

use tributary::admin::AdminError;

use crate::Exit;

/// Prints a refusal the way every command does, and says which exit it means. Infrastructure
/// failures are returned as errors.
pub(crate) fn refused(error: AdminError) -> anyhow::Result<Exit> {
    match error {
        AdminError::Store(e) => Err(anyhow::Error::new(e).context("database error")),
        other => {
            eprintln!("error: {other}");
            Ok(Exit::Refused)
        }
    }
}

/// Parses a JSON argument, naming the flag when it is malformed.
pub(crate) fn parse_json(flag: &str, text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{flag} is not valid JSON: {e}"))
}

/// The worst of several exits: a refusal or failure anywhere is what the command reports.
pub(crate) fn worst(a: Exit, b: Exit) -> Exit {
    let rank = |e: Exit| match e {
        Exit::Ok => 0,
        Exit::Delayed => 1,
        Exit::RunFailed => 2,
        Exit::Refused => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}
