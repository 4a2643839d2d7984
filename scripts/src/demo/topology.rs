//! The demo's runtime: a worker and a tick generator, as the processes they are in production.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};

/// Child processes, stopped with SIGTERM (and killed if they outlive the grace) when dropped or
/// stopped.
pub struct Topology {
    children: Vec<(&'static str, Child)>,
    pub logs: PathBuf,
}

impl Topology {
    /// Starts `tributary-worker` and `tributary-tick-generator` (built next to this binary),
    /// logging to `logs/`.
    pub async fn start(database_url: &str, logs: &Path, secret_key: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(logs)
            .with_context(|| format!("creating the log folder {}", logs.display()))?;
        let dir = std::env::current_exe()
            .context("locating the demo binary")?
            .parent()
            .map(Path::to_path_buf)
            .context("the demo binary has no folder")?;
        let mut topology = Self {
            children: Vec::new(),
            logs: logs.to_path_buf(),
        };
        for name in ["tributary-worker", "tributary-tick-generator"] {
            let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
            let child = Command::new(dir.join(name))
                .env("DATABASE_URL", database_url)
                .env("TRIBUTARY_QUEUE", "postgres")
                .env(tributary::keyring::KEY_ENV, secret_key)
                .env("RUST_LOG", "info,sqlx::query=error")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {name} (built by scripts/demo)"))?;
            topology.children.push((name, child));
        }
        Ok(topology)
    }

    /// Process ids, for the summary.
    pub fn describe(&self) -> String {
        self.children
            .iter()
            .map(|(name, child)| format!("{name} (pid {})", child.id().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether every child still runs.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.children {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "{name} exited ({status}); see its log in {}",
                    self.logs.display()
                );
            }
        }
        Ok(())
    }

    /// SIGTERM to each, then waits up to `grace` for them to exit; returns how each ended.
    pub async fn stop(mut self, grace: Duration) -> Vec<String> {
        let mut ended = Vec::new();
        for (name, child) in &mut self.children {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()
                    .await;
            }
            let status = match tokio::time::timeout(grace, child.wait()).await {
                Ok(Ok(status)) => format!("{name} exited ({status})"),
                Ok(Err(e)) => format!("{name}: {e}"),
                Err(_) => {
                    let _ = child.kill().await;
                    format!("{name} did not exit within {grace:?}: killed")
                }
            };
            ended.push(status);
        }
        self.children.clear();
        ended
    }
}
