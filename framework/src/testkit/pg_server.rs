//! A throwaway PostgreSQL server of the test's own, from the system's binaries, that a test may
//! stop, start and restart (outage tests: never the shared server other tests use).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A PostgreSQL server in a temporary directory; stopped and removed when dropped.
pub struct PgServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort();
    found
        .pop()
        .expect("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a server binary (as `postgres` when the test runs as root: initdb refuses root).
fn run(bin: &Path, tool: &str, args: &[&str]) -> std::process::Output {
    let program = bin.join(tool);
    let output = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&program)
            .args(args)
            .output()
    } else {
        Command::new(&program).args(args).output()
    };
    output.unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// A free port of 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

impl PgServer {
    /// Makes a new cluster on a free port (not started).
    pub fn init() -> Self {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!("tributary-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("cannot make the server's directory");
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown of {} failed", dir.display());
        }
        let data = dir.join("data");
        let out = run(
            &bin,
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            bin,
            dir,
            port: free_port(),
        }
    }

    /// [`PgServer::init`], then [`PgServer::start`].
    pub fn start_new() -> Self {
        let server = Self::init();
        server.start();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn ctl(&self, args: &[&str]) {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let mut all = vec![
            "-D".to_owned(),
            data.to_string_lossy().into_owned(),
            "-l".to_owned(),
            log.to_string_lossy().into_owned(),
            "-w".to_owned(),
            "-t".to_owned(),
            "60".to_owned(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = run(&self.bin, "pg_ctl", &all);
        assert!(
            out.status.success(),
            "pg_ctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server; returns once it accepts connections.
    pub fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off",
            self.port,
            self.dir.display()
        );
        self.ctl(&["start", "-o", &options]);
    }

    /// Stops the server (`mode`: `fast` or `immediate`).
    pub fn stop(&self, mode: &str) {
        self.ctl(&["stop", "-m", mode]);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = run(
            &self.bin,
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "stop", "-m", "immediate"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
