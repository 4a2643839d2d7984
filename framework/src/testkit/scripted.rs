//! An integration whose behaviour a test scripts with closures, and which records its calls.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use crate::context::RunContext;
use crate::error::IntegrationError;
use crate::service::{IntegrationService, ServiceConfig};
use crate::stream::{NewStream, Stream, StreamOutcome};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type StreamFn =
    dyn Fn(StreamCall) -> BoxFuture<Result<StreamOutcome, IntegrationError>> + Send + Sync;
type HookFn = dyn Fn(&mut RunContext) -> Result<(), IntegrationError> + Send + Sync;
type FinishedFn = dyn Fn(&Stream, &StreamOutcome) -> bool + Send + Sync;

/// One call of `process_stream`.
#[derive(Debug, Clone)]
pub struct StreamCall {
    pub stream: Stream,
    pub ctx: RunContext,
    /// 1 for the first call with this stream identifier, 2 for the second…
    pub call: u32,
}

/// What the service was asked to do: hook names and stream identifiers, in order.
#[derive(Debug, Default)]
pub struct CallLog {
    entries: Mutex<Vec<String>>,
    counts: Mutex<HashMap<String, u32>>,
}

impl CallLog {
    fn record(&self, entry: String) -> u32 {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(entry.clone()).or_default();
        *n += 1;
        let count = *n;
        drop(counts);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry);
        count
    }

    /// Every call, in order: `preprocess`, `get_streams`, `stream:<identifier>`, `postprocess`.
    pub fn entries(&self) -> Vec<String> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many times `entry` was called.
    pub fn count(&self, entry: &str) -> u32 {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(entry)
            .copied()
            .unwrap_or(0)
    }
}

/// A scripted integration: its root streams are fixed, `process_stream` is a closure.
#[derive(Clone)]
pub struct ScriptedService {
    platform: &'static str,
    config: ServiceConfig,
    roots: Vec<NewStream>,
    on_stream: Arc<StreamFn>,
    on_preprocess: Option<Arc<HookFn>>,
    on_postprocess: Option<Arc<HookFn>>,
    finished: Option<Arc<FinishedFn>>,
    log: Arc<CallLog>,
}

impl ScriptedService {
    pub fn new<F, Fut>(platform: &'static str, roots: Vec<NewStream>, on_stream: F) -> Self
    where
        F: Fn(StreamCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<StreamOutcome, IntegrationError>> + Send + 'static,
    {
        Self {
            platform,
            config: ServiceConfig::default(),
            roots,
            on_stream: Arc::new(move |call| Box::pin(on_stream(call))),
            on_preprocess: None,
            on_postprocess: None,
            finished: None,
            log: Arc::new(CallLog::default()),
        }
    }

    pub fn config(mut self, config: ServiceConfig) -> Self {
        self.config = config;
        self
    }

    pub fn preprocess(
        mut self,
        f: impl Fn(&mut RunContext) -> Result<(), IntegrationError> + Send + Sync + 'static,
    ) -> Self {
        self.on_preprocess = Some(Arc::new(f));
        self
    }

    pub fn postprocess(
        mut self,
        f: impl Fn(&mut RunContext) -> Result<(), IntegrationError> + Send + Sync + 'static,
    ) -> Self {
        self.on_postprocess = Some(Arc::new(f));
        self
    }

    pub fn finished_when(
        mut self,
        f: impl Fn(&Stream, &StreamOutcome) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.finished = Some(Arc::new(f));
        self
    }

    /// The record of calls, shared with every clone.
    pub fn log(&self) -> Arc<CallLog> {
        self.log.clone()
    }
}

#[async_trait]
impl IntegrationService for ScriptedService {
    /// Any JSON object, any credentials.
    type Settings = Value;

    fn platform(&self) -> &'static str {
        self.platform
    }

    fn config(&self) -> ServiceConfig {
        self.config.clone()
    }

    async fn preprocess(&self, ctx: &mut RunContext) -> Result<(), IntegrationError> {
        self.log.record("preprocess".into());
        match &self.on_preprocess {
            Some(f) => f(ctx),
            None => Ok(()),
        }
    }

    async fn get_streams(&self, _ctx: &RunContext) -> Result<Vec<NewStream>, IntegrationError> {
        self.log.record("get_streams".into());
        Ok(self.roots.clone())
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext,
    ) -> Result<StreamOutcome, IntegrationError> {
        let call = self.log.record(format!("stream:{}", stream.identifier));
        (self.on_stream)(StreamCall {
            stream: stream.clone(),
            ctx: ctx.clone(),
            call,
        })
        .await
    }

    async fn is_processing_finished(
        &self,
        stream: &Stream,
        outcome: &StreamOutcome,
        _ctx: &RunContext,
    ) -> Result<bool, IntegrationError> {
        Ok(self.finished.as_ref().is_some_and(|f| f(stream, outcome)))
    }

    async fn postprocess(&self, ctx: &mut RunContext) -> Result<(), IntegrationError> {
        self.log.record("postprocess".into());
        match &self.on_postprocess {
            Some(f) => f(ctx),
            None => Ok(()),
        }
    }
}
