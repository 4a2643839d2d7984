//! The process's memory while a run grows: RSS sampled through the run, and the peak.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// RSS in KiB at the end of each quarter of the run's duration.
pub struct MemoryProfile {
    pub elapsed: Duration,
    pub quarters: [u64; 4],
}

impl MemoryProfile {
    pub fn growth_kib(&self) -> i64 {
        self.quarters[3] as i64 - self.quarters[0] as i64
    }
}

pub async fn measure<F, Fut>(run: F) -> anyhow::Result<MemoryProfile>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<Duration>>,
{
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let sampler = tokio::spawn(async move {
        let start = Instant::now();
        let mut samples = Vec::new();
        while !flag.load(Ordering::SeqCst) {
            samples.push((start.elapsed(), rss_kib()));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        samples
    });
    let elapsed = run().await?;
    done.store(true, Ordering::SeqCst);
    let samples = sampler.await?;
    let mut quarters = [0u64; 4];
    for (q, slot) in quarters.iter_mut().enumerate() {
        let end = elapsed.mul_f64((q + 1) as f64 / 4.0);
        *slot = samples
            .iter()
            .filter(|(at, _)| *at <= end)
            .map(|(_, rss)| *rss)
            .max()
            .unwrap_or(0);
    }
    Ok(MemoryProfile { elapsed, quarters })
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}
