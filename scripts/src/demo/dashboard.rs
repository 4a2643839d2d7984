//! The demo's dashboard: `tributary-server` on a free port of 127.0.0.1 with an operator token made
//! for the demo; kept up after the summary while someone watches at a terminal.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tributary::admin::tokens::{self, Role};

use super::topology::Topology;

pub struct Dashboard {
    pub addr: SocketAddr,
    pub token: String,
}

impl Dashboard {
    /// Picks the server's port and creates its token.
    pub async fn prepare(pool: &PgPool) -> anyhow::Result<Self> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port for the dashboard")?;
        let (_, token) = tokens::create(pool, "demo", Role::Operator)
            .await
            .context("creating the demo's API token")?;
        Ok(Self { addr, token })
    }

    /// Waits until the server accepts connections (or a process of the topology died).
    pub async fn wait_until_up(&self, topology: &mut Topology) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            topology.check_alive()?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "the dashboard did not start; see tributary-server.log in {}",
                topology.logs.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Signs the browser in and opens the overview.
    pub fn login_url(&self) -> String {
        format!("http://{}/login?token={}", self.addr, self.token)
    }

    /// At a terminal, keeps everything up until Enter or Ctrl-C; without one (CI), returns at once.
    pub async fn keep_up_while_watched(&self, shutdown: &CancellationToken) {
        if !std::io::stdin().is_terminal() {
            return;
        }
        println!(
            "the dashboard stays up at http://{}/ — press Enter or Ctrl-C to stop",
            self.addr
        );
        let enter = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)
        });
        tokio::select! {
            _ = enter => {}
            () = shutdown.cancelled() => {}
        }
    }
}
