//! `scripts/new-integration` writes an integration that compiles, is formatted and lint-clean,
//! and passes the conformance suite: the scaffold is run into a copy of the workspace and its test
//! file run there, reusing this build's target directory (only the workspace's own crates are
//! compiled again).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `target` (this test binary is `target/debug/deps/scaffold-HASH`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            exe.ancestors().nth(3).unwrap().to_path_buf()
        })
}

/// The workspace's sources (not its build, caches or git data) copied under `to`.
fn copy_sources(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            copy_sources(&path, &to.join(&*name));
        } else {
            std::fs::copy(&path, to.join(&*name)).unwrap();
        }
    }
}

fn cargo(root: &Path, args: &[&str]) -> std::process::Output {
    tributary::testkit::cargo::cargo(root)
        .env("CARGO_TARGET_DIR", target_dir())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_scaffolded_integration_compiles_and_passes_the_conformance_suite() {
    let dir = std::env::temp_dir().join(format!("tributary-scaffold-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_sources(&workspace(), &dir);

    let scaffold = Command::new(env!("CARGO_BIN_EXE_new-integration"))
        .args(["acme-wiki", "--root"])
        .arg(&dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&scaffold.stdout);
    assert!(
        scaffold.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&scaffold.stderr)
    );
    for file in [
        "integrations/src/acme_wiki/mod.rs",
        "integrations/src/acme_wiki/fake.rs",
        "integrations/tests/acme_wiki.rs",
        "integrations/src/lib.rs",
    ] {
        assert!(said.contains(file), "{said}");
    }
    // it refuses to write over an integration
    let again = Command::new(env!("CARGO_BIN_EXE_new-integration"))
        .args(["acme-wiki", "--root"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    let fmt = cargo(&dir, &["fmt", "--all", "--check"]);
    assert!(
        fmt.status.success(),
        "{}",
        String::from_utf8_lossy(&fmt.stdout)
    );
    // the same selection as scripts/test's lints, so that the dependencies' checks are reused
    let lint = cargo(
        &dir,
        &[
            "clippy",
            "--offline",
            "--locked",
            "--workspace",
            "--all-targets",
            "--quiet",
            "--",
            "-D",
            "warnings",
        ],
    );
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stderr)
    );
    let test = cargo(
        &dir,
        &[
            "test",
            "--offline",
            "--locked",
            "--workspace",
            "--test",
            "acme_wiki",
        ],
    );
    let out = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success() && out.contains("test result: ok. 8 passed"),
        "{out}{}",
        String::from_utf8_lossy(&test.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
