//! Proxies that misbehave on purpose, between the worker and what it talks to.
//!
//! * [`ChaosProxy`]: an HTTP/1.1 proxy in front of a fake platform that, per request and from a
//!   seeded random source, answers 5xx, starts a 429 storm, hangs past the client's timeout,
//!   cuts the body short (fewer bytes than its `Content-Length`, then the connection closes) or
//!   answers 200 with an HTML page; else it forwards. One request per connection
//!   (`Connection: close`), so a cut body is a real transport failure.
//! * [`TcpCut`]: a TCP proxy that can be cut (every connection dropped, new ones refused) and
//!   restored: the queue "unreachable for a while".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// The chance of each fault, per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChaosPlan {
    /// 500/502/503/504.
    pub server_error: f64,
    /// Starts a storm: this request and the next `storm_length - 1` get 429 `Retry-After: 1`.
    pub rate_limit_storm: f64,
    pub storm_length: u32,
    /// Answered after `hang_for` (past the client's 30 s timeout), if at all.
    pub hang: f64,
    pub hang_for: Duration,
    /// The body cut at half its length.
    pub truncated: f64,
    /// 200 with an HTML body.
    pub not_json: f64,
}

#[derive(Debug, Default)]
pub struct Counts {
    pub forwarded: AtomicUsize,
    pub server_error: AtomicUsize,
    pub rate_limited: AtomicUsize,
    pub hang: AtomicUsize,
    pub truncated: AtomicUsize,
    pub not_json: AtomicUsize,
}

impl Counts {
    fn get(n: &AtomicUsize) -> usize {
        n.load(Ordering::SeqCst)
    }

    /// Faults injected.
    pub fn injected(&self) -> usize {
        [
            &self.server_error,
            &self.rate_limited,
            &self.hang,
            &self.truncated,
            &self.not_json,
        ]
        .into_iter()
        .map(Self::get)
        .sum()
    }

    pub fn describe(&self) -> String {
        format!(
            "{} injected in {} requests ({} 5xx, {} 429, {} hangs, {} cut bodies, {} non-JSON)",
            self.injected(),
            self.injected() + Self::get(&self.forwarded),
            Self::get(&self.server_error),
            Self::get(&self.rate_limited),
            Self::get(&self.hang),
            Self::get(&self.truncated),
            Self::get(&self.not_json),
        )
    }
}

enum Fault {
    None,
    ServerError(u16),
    RateLimited,
    Hang,
    Truncated,
    NotJson,
}

/// A flaky platform, not a dead one: a page never gets more than this many faults that cost a
/// retry in a row (the streams' `max_retries` is 5), so every stream can finish.
const MAX_STREAK: u32 = 3;

struct Dice {
    rng: fastrand::Rng,
    storm_left: u32,
    /// Faults that cost a retry, in a row, per request target.
    streak: HashMap<String, u32>,
}

impl Dice {
    fn roll(&mut self, plan: &ChaosPlan, target: &str) -> Fault {
        let fault = self.pick(plan);
        let streak = self.streak.entry(target.to_owned()).or_default();
        match fault {
            Fault::None | Fault::RateLimited => {
                if matches!(fault, Fault::None) {
                    *streak = 0;
                }
                fault
            }
            _ if *streak >= MAX_STREAK => {
                *streak = 0;
                Fault::None
            }
            _ => {
                *streak += 1;
                fault
            }
        }
    }

    fn pick(&mut self, plan: &ChaosPlan) -> Fault {
        if self.storm_left > 0 {
            self.storm_left -= 1;
            return Fault::RateLimited;
        }
        let x = self.rng.f64();
        let mut edge = 0.0;
        let mut hit = |p: f64| {
            edge += p;
            x < edge
        };
        if hit(plan.server_error) {
            Fault::ServerError([500, 502, 503, 504][self.rng.usize(..4)])
        } else if hit(plan.rate_limit_storm) {
            self.storm_left = plan.storm_length.saturating_sub(1);
            Fault::RateLimited
        } else if hit(plan.hang) {
            Fault::Hang
        } else if hit(plan.truncated) {
            Fault::Truncated
        } else if hit(plan.not_json) {
            Fault::NotJson
        } else {
            Fault::None
        }
    }
}

/// A misbehaving proxy in front of `upstream` (an `http://127.0.0.1:PORT` base URL).
pub struct ChaosProxy {
    addr: SocketAddr,
    pub counts: Arc<Counts>,
    task: JoinHandle<()>,
}

impl ChaosProxy {
    pub async fn start(upstream: String, plan: ChaosPlan, seed: u64) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let dice = Arc::new(Mutex::new(Dice {
            rng: fastrand::Rng::with_seed(seed),
            storm_left: 0,
            streak: HashMap::new(),
        }));
        let client = reqwest::Client::new();
        let c = counts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(
                    socket,
                    upstream.clone(),
                    client.clone(),
                    Some((dice.clone(), plan)),
                    c.clone(),
                ));
            }
        });
        Self { addr, counts, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request head (a GET has no body).
async fn read_head(socket: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(head).ok()
}

async fn respond(
    socket: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    cut: bool,
) {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = out.into_bytes();
    let sent = if cut { body.len() / 2 } else { body.len() };
    bytes.extend_from_slice(&body[..sent]);
    let _ = socket.write_all(&bytes).await;
    let _ = socket.flush().await;
    let _ = socket.shutdown().await;
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

async fn serve(
    mut socket: TcpStream,
    upstream: String,
    client: reqwest::Client,
    dice: Option<(Arc<Mutex<Dice>>, ChaosPlan)>,
    counts: Arc<Counts>,
) {
    let Some(head) = read_head(&mut socket).await else {
        return;
    };
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_owned();
    let request_headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .filter(|(k, _)| k == "authorization" || k == "accept")
        .collect();
    let (fault, hang_for) = match dice {
        Some((dice, plan)) => (dice.lock().unwrap().roll(&plan, &target), plan.hang_for),
        None => (Fault::None, Duration::ZERO),
    };
    let json = [("content-type".to_owned(), "application/json".to_owned())];
    match fault {
        Fault::ServerError(status) => {
            counts.server_error.fetch_add(1, Ordering::SeqCst);
            let body = format!(r#"{{"message":"chaos: {status}"}}"#);
            respond(&mut socket, status, &json, body.as_bytes(), false).await;
            return;
        }
        Fault::RateLimited => {
            counts.rate_limited.fetch_add(1, Ordering::SeqCst);
            let mut headers = json.to_vec();
            headers.push(("retry-after".to_owned(), "1".to_owned()));
            respond(
                &mut socket,
                429,
                &headers,
                br#"{"message":"rate limit exceeded"}"#,
                false,
            )
            .await;
            return;
        }
        Fault::Hang => {
            counts.hang.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(hang_for).await;
            return;
        }
        Fault::NotJson => {
            counts.not_json.fetch_add(1, Ordering::SeqCst);
            let html = [("content-type".to_owned(), "text/html".to_owned())];
            respond(
                &mut socket,
                200,
                &html,
                b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                false,
            )
            .await;
            return;
        }
        Fault::None | Fault::Truncated => {}
    }
    let mut request = client.get(format!("{upstream}{target}"));
    for (name, value) in &request_headers {
        request = request.header(name, value);
    }
    let Ok(response) = request.send().await else {
        respond(
            &mut socket,
            502,
            &json,
            br#"{"message":"upstream unreachable"}"#,
            false,
        )
        .await;
        return;
    };
    let status = response.status().as_u16();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            k.starts_with("x-ratelimit") || k == "retry-after" || k == "content-type"
        })
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = response.bytes().await.unwrap_or_default();
    let cut = matches!(fault, Fault::Truncated) && body.len() > 1;
    if cut {
        counts.truncated.fetch_add(1, Ordering::SeqCst);
    } else {
        counts.forwarded.fetch_add(1, Ordering::SeqCst);
    }
    respond(&mut socket, status, &headers, &body, cut).await;
}

/// A TCP proxy that can be cut and restored.
pub struct TcpCut {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    pub cuts: AtomicU32,
    task: JoinHandle<()>,
}

impl TcpCut {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (u, conns) = (up.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !u.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let handle = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut list = conns.lock().unwrap();
                list.retain(|h| !h.is_finished());
                list.push(handle.abort_handle());
            }
        });
        Self {
            addr,
            up,
            connections,
            cuts: AtomicU32::new(0),
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection and refuses new ones until [`TcpCut::restore`].
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.fetch_add(1, Ordering::SeqCst);
        for handle in self.connections.lock().unwrap().drain(..) {
            handle.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpCut {
    fn drop(&mut self) {
        self.task.abort();
        for handle in self.connections.lock().unwrap().drain(..) {
            handle.abort();
        }
    }
}
