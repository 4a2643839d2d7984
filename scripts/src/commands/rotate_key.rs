//! `rotate-credentials-key`: seals every integration's credentials with the current key (those in
//! the clear and those under a previous key), or makes a new key.

use anyhow::Context as _;
use clap::Parser;
use tributary::keyring::{self, Keyring};

use crate::context::CommandContext;
use crate::{EXIT_CODES, Exit};

/// Seal every integration's credentials with the current key.
///
/// To rotate: make a key (`--generate`), start this command with it as TRIBUTARY_SECRET_KEY and
/// the old key in TRIBUTARY_SECRET_KEY_PREVIOUS, then give the workers the new key (keeping the
/// old one in TRIBUTARY_SECRET_KEY_PREVIOUS until this command has run). Safe to run beside
/// running workers and to run again.
#[derive(Debug, Parser)]
#[command(name = "rotate-credentials-key", after_help = EXIT_CODES)]
pub struct RotateArgs {
    /// Print a new random key (64 hex digits) and exit.
    #[arg(long)]
    pub generate: bool,
}

pub async fn run(args: RotateArgs) -> anyhow::Result<Exit> {
    if args.generate {
        println!("{}", Keyring::generate_key());
        return Ok(Exit::Ok);
    }
    let ctx = CommandContext::from_env().await?;
    let keys = keyring::current();
    let Some(kid) = keys.current_key_id() else {
        eprintln!("error: {}", keyring::KeyError::Missing);
        return Ok(Exit::Refused);
    };
    let done = tributary::store::integrations::rotate_credentials(&ctx.pool, keys)
        .await
        .context("sealing the credentials with the current key")?;
    println!(
        "credentials sealed with key {kid}: {} integration(s) resealed, {} already sealed with it or empty",
        done.resealed, done.unchanged
    );
    Ok(Exit::Ok)
}
