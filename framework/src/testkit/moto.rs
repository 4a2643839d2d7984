//! moto's SQS-compatible server for tests of the `sqs` queue backend: one per test process,
//! started on a free port of 127.0.0.1 on first use and stopped when the process ends.
//!
//! The server is found through `TRIBUTARY_MOTO_SERVER` (exported by `ensure_moto` of
//! `scripts/lib/moto.sh`), then in the workspace's `.venv-moto`, then on `PATH`. Without it a test
//! that needs it fails and says how to install it: it never passes silently.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use uuid::Uuid;

use crate::queue::{SqsQueue, SqsQueueSettings};

/// The region and static credentials the tests use with moto.
pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY: &str = "test";
pub const SECRET_KEY: &str = "test";

const HOW_TO_INSTALL: &str = "install it with `source scripts/lib/common.sh && source scripts/lib/moto.sh && ensure_moto` \
     (or `scripts/test`, which does), or point TRIBUTARY_MOTO_SERVER at a `moto_server` executable";

/// A running moto server.
pub struct MotoServer {
    addr: SocketAddr,
    _watchdog: Child,
    log: PathBuf,
}

static SHARED: OnceLock<MotoServer> = OnceLock::new();

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// Finds an executable of the moto venv: `$variable`, then `.venv-moto/bin/NAME`, then `PATH`.
fn find_tool(variable: &str, name: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{variable}={} does not exist", path.display()))
        };
    }
    let venv = workspace_root().join(".venv-moto/bin").join(name);
    if venv.is_file() {
        return Ok(venv);
    }
    on_path(name).ok_or_else(|| {
        format!(
            "`{name}` not found ({variable} unset, not in {}, not on PATH)",
            venv.display()
        )
    })
}

/// The `moto_server` executable, or a panic that says how to install it.
pub fn moto_server_path() -> PathBuf {
    find_tool("TRIBUTARY_MOTO_SERVER", "moto_server")
        .unwrap_or_else(|e| panic!("moto's server is needed by this test: {e}; {HOW_TO_INSTALL}"))
}

/// The `aws` CLI, or a panic that says how to install it.
pub fn aws_cli_path() -> PathBuf {
    find_tool("TRIBUTARY_AWS_CLI", "aws")
        .unwrap_or_else(|e| panic!("the aws CLI is needed by this test: {e}; {HOW_TO_INSTALL}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

impl MotoServer {
    /// The server of this test process, started on first use (about 1 s).
    pub fn shared() -> &'static MotoServer {
        SHARED.get_or_init(Self::start)
    }

    fn start() -> Self {
        let server = moto_server_path();
        let port = free_port();
        let log = std::env::temp_dir().join(format!("tributary-moto-{port}.log"));
        // A watchdog shell owns moto and stops it when this test process is gone: a test binary
        // never runs destructors of statics, and nothing may outlive it.
        let script = r#"
            "$1" -H 127.0.0.1 -p "$2" >"$3" 2>&1 &
            moto=$!
            trap 'kill $moto 2>/dev/null; exit 0' TERM INT
            while kill -0 "$4" 2>/dev/null && kill -0 $moto 2>/dev/null; do sleep 0.5; done
            kill $moto 2>/dev/null
        "#;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("moto-watchdog")
            .arg(&server)
            .arg(port.to_string())
            .arg(&log)
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                let mut text = String::new();
                let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut text));
                panic!(
                    "moto ({}) did not answer on {addr} within 30 s; its log:\n{text}",
                    server.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            addr,
            _watchdog: watchdog,
            log,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The environment a process needs to reach this server with the standard AWS variables.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_DEFAULT_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }

    /// An SQS client for this server.
    pub fn client(&self) -> Client {
        Self::client_at(&self.endpoint())
    }

    /// An SQS client with this server's region and credentials for `endpoint` (a proxy in
    /// front of it, or nothing at all).
    pub fn client_at(endpoint: &str) -> Client {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "moto"))
            .http_client(crate::queue::sqs_https_client())
            .build();
        Client::from_conf(config)
    }

    /// A new queue (and its dead-letter queue) with a unique name starting with `prefix`.
    pub async fn queue(&self, prefix: &str, settings: &SqsQueueSettings) -> SqsQueue {
        let name = format!("{prefix}-{}", Uuid::new_v4().simple());
        SqsQueue::create(self.client(), &name, settings)
            .await
            .unwrap_or_else(|e| panic!("creating queue {name} on moto: {e}"))
    }
}
