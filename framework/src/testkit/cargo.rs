//! Cargo run from inside a test.
//!
//! A test process inherits what cargo sets for the *test* (`CARGO_MANIFEST_DIR`,
//! `CARGO_PKG_NAME`, `OUT_DIR`, …). Build scripts such as ring's rerun when those change, so a
//! cargo started with them would rebuild ring, rustls and everything above them in the shared
//! target directory — and the next ordinary build would rebuild them back.

use std::path::Path;
use std::process::Command;

/// Whether cargo sets `key` for the crate it builds or runs (not for cargo itself).
fn set_per_crate(key: &str) -> bool {
    const PREFIXES: [&str; 4] = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CFG_", "CARGO_BIN_"];
    const NAMES: [&str; 5] = [
        "OUT_DIR",
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p)) || NAMES.contains(&key)
}

/// A `cargo` command (the one running the tests, if any) in `dir`, with the environment cargo
/// set for this test removed, so that it reuses the build it runs in.
pub fn cargo(dir: &Path) -> Command {
    let program = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(program);
    command.current_dir(dir);
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_per_crate) {
            command.env_remove(key);
        }
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_cargo_sets_for_a_test_is_removed_and_its_own_settings_kept() {
        for key in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "OUT_DIR",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_EXE_worker",
        ] {
            assert!(set_per_crate(key), "{key}");
        }
        for key in [
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_INCREMENTAL",
            "CARGO",
            "PATH",
        ] {
            assert!(!set_per_crate(key), "{key}");
        }
    }

    #[test]
    fn the_command_runs_in_the_directory_without_the_test_s_variables() {
        let dir = std::env::temp_dir();
        let command = cargo(&dir);
        assert_eq!(command.get_current_dir(), Some(dir.as_path()));
        // this test runs under cargo, which set CARGO_MANIFEST_DIR for it
        if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
            let removed = command
                .get_envs()
                .any(|(k, v)| k == "CARGO_MANIFEST_DIR" && v.is_none());
            assert!(removed);
        }
    }
}
