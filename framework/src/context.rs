//! What a run's hooks see: the integration, its typed settings and its credentials, the pipeline
//! data from `preprocess`, whether the run is onboarding, the window a check reads, and the HTTP
//! clients of the process.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::error::IntegrationError;
use crate::http::{HttpClient, HttpClients, HttpConfig};
use crate::secret::Credentials;
use crate::stream::Stream;

/// The context of one run, shared by its hooks, with the integration's settings as `S` (its
/// [`crate::Settings`] type). `preprocess` and `postprocess` get it mutably: the pipeline data
/// and settings they set are committed with the hook's result.
pub struct RunContext<S: ?Sized = Value> {
    run: Arc<RunInfo>,
    settings: Arc<S>,
    pipeline_data: Arc<Value>,
    settings_changed: bool,
}

/// A context whose settings type is known only to its service (what the processor holds).
pub type AnyContext = RunContext<dyn Any + Send + Sync>;

impl<S: ?Sized> Clone for RunContext<S> {
    fn clone(&self) -> Self {
        Self {
            run: self.run.clone(),
            settings: self.settings.clone(),
            pipeline_data: self.pipeline_data.clone(),
            settings_changed: self.settings_changed,
        }
    }
}

impl<S: ?Sized + std::fmt::Debug> std::fmt::Debug for RunContext<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("run", &self.run)
            .field("settings", &self.settings)
            .field("pipeline_data", &self.pipeline_data)
            .finish()
    }
}

/// What the store and the processor know of a run, shared by every hook call.
#[derive(Debug)]
pub struct RunInfo {
    pub integration_id: Uuid,
    pub tenant_id: Uuid,
    pub platform: String,
    pub run_id: Uuid,
    pub onboarding: bool,
    pub credentials: Credentials,
    /// When the last successful run started (shown to operators; the window of an integration
    /// processed before per-source checkpoints existed).
    pub last_processed_at: Option<DateTime<Utc>>,
    /// Per source: when the last run that read all of it successfully started.
    pub checkpoints: HashMap<String, DateTime<Utc>>,
    /// A check reads from a source's checkpoint minus this.
    pub check_overlap: Duration,
    /// The process's HTTP clients and the longest wait a worker sits out inline.
    pub http: HttpPool,
}

/// The HTTP clients of a process (shared by every run, so connections and per-credential pacing
/// are too), and the longest wait a request may sit out inline before the run is deferred.
#[derive(Debug, Clone)]
pub struct HttpPool {
    pub clients: Arc<HttpClients>,
    pub max_inline_wait: Duration,
}

impl HttpPool {
    pub fn new(clients: Arc<HttpClients>, max_inline_wait: Duration) -> Self {
        Self {
            clients,
            max_inline_wait,
        }
    }
}

/// What a check reads of one source: everything (`since` is `None`: onboarding, or a source never
/// read successfully), or what happened from `since` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub since: Option<DateTime<Utc>>,
}

impl Window {
    /// The whole history.
    pub const EVERYTHING: Self = Self { since: None };

    /// Whether something that happened at `at` is in the window.
    pub fn includes(&self, at: DateTime<Utc>) -> bool {
        self.since.is_none_or(|since| at >= since)
    }

    /// Whether the window is the whole history.
    pub fn is_everything(&self) -> bool {
        self.since.is_none()
    }

    /// `since` in Unix seconds (APIs that filter by epoch).
    pub fn since_unix(&self) -> Option<i64> {
        self.since.map(|at| at.timestamp())
    }
}

impl<S: ?Sized> RunContext<S> {
    pub fn integration_id(&self) -> Uuid {
        self.run.integration_id
    }

    pub fn tenant_id(&self) -> Uuid {
        self.run.tenant_id
    }

    pub fn platform(&self) -> &str {
        &self.run.platform
    }

    pub fn run_id(&self) -> Uuid {
        self.run.run_id
    }

    /// Onboarding reads the platform's whole history; a check reads each source's
    /// [`RunContext::window`].
    pub fn is_onboarding(&self) -> bool {
        self.run.onboarding
    }

    /// When the last successful run of this integration started.
    pub fn last_processed_at(&self) -> Option<DateTime<Utc>> {
        self.run.last_processed_at
    }

    /// The window a stream reads: its source's ([`Stream::source`]).
    pub fn window(&self, stream: &Stream) -> Window {
        self.window_of(&stream.source)
    }

    /// The window of a source (a root stream's identifier, or the source a stream declared with
    /// [`crate::NewStream::source`]): everything for onboarding; else from when the last run that
    /// read the whole source successfully started, minus the platform's `check_overlap`, so that
    /// records indexed late or stamped by a skewed clock are not missed (reading one twice is a
    /// no-op). A source never read successfully is read whole. An integration processed before
    /// sources had checkpoints reads from its last successful run.
    pub fn window_of(&self, source: &str) -> Window {
        if self.run.onboarding {
            return Window::EVERYTHING;
        }
        let from = match self.run.checkpoints.get(source) {
            Some(at) => Some(*at),
            None if self.run.checkpoints.is_empty() => self.run.last_processed_at,
            None => None,
        };
        let overlap = chrono::Duration::from_std(self.run.check_overlap).unwrap_or_default();
        Window {
            since: from.map(|at| at - overlap),
        }
    }

    /// The client for `config`, from the process's pool: requests of every stream and run of
    /// this process with the same configuration share its connections and per-credential pacing.
    /// Waits longer than the worker's `max_inline_wait` defer the run.
    pub fn client(&self, config: HttpConfig) -> Result<HttpClient, IntegrationError> {
        let http = &self.run.http;
        http.clients.get(
            config
                .max_inline_wait(http.max_inline_wait)
                .platform(&self.run.platform),
        )
    }

    pub fn credentials(&self) -> &Credentials {
        &self.run.credentials
    }

    /// The integration's settings, as its settings type.
    pub fn settings(&self) -> &S {
        &self.settings
    }

    pub fn pipeline_data(&self) -> &Value {
        &self.pipeline_data
    }

    pub fn pipeline_data_as<T: DeserializeOwned>(&self) -> Result<T, IntegrationError> {
        T::deserialize(self.pipeline_data.as_ref()).map_err(|e| {
            IntegrationError::fatal("the run's pipeline data does not match its type")
                .with_source(e)
        })
    }

    /// Sets the data `preprocess` hands to the rest of the run. It is persisted with the run, so a
    /// run resumed on another worker has it.
    pub fn set_pipeline_data<T: Serialize>(&mut self, data: &T) -> Result<(), IntegrationError> {
        let value = serde_json::to_value(data).map_err(|e| {
            IntegrationError::fatal("pipeline data does not serialize").with_source(e)
        })?;
        self.pipeline_data = Arc::new(value);
        Ok(())
    }

    /// Whether a hook replaced the settings.
    pub fn settings_changed(&self) -> bool {
        self.settings_changed
    }

    /// The shared run information.
    pub fn info(&self) -> &RunInfo {
        &self.run
    }

    fn with_settings<T: ?Sized>(&self, settings: Arc<T>, changed: bool) -> RunContext<T> {
        RunContext {
            run: self.run.clone(),
            settings,
            pipeline_data: self.pipeline_data.clone(),
            settings_changed: changed,
        }
    }
}

impl<S> RunContext<S> {
    /// Replaces the integration's settings (a cursor, a discovered id). Committed with the hook
    /// that made the change: `preprocess` or `postprocess`.
    pub fn update_settings(&mut self, settings: S) {
        self.settings = Arc::new(settings);
        self.settings_changed = true;
    }
}

impl RunContext<Value> {
    /// A context from what the store holds.
    pub fn new(run: RunInfo, settings: Value, pipeline_data: Value) -> Self {
        Self {
            run: Arc::new(run),
            settings: Arc::new(settings),
            pipeline_data: Arc::new(pipeline_data),
            settings_changed: false,
        }
    }
}

impl<S: Send + Sync + 'static> RunContext<S> {
    /// The context with its settings type hidden (what the processor holds).
    pub fn erase(&self) -> AnyContext {
        let settings: Arc<dyn Any + Send + Sync> = self.settings.clone();
        self.with_settings(settings, self.settings_changed)
    }
}

impl RunContext<Value> {
    /// Parses the stored settings as `S` (once a run: the typed value is shared by every hook).
    pub fn parse<S: DeserializeOwned + Send + Sync + 'static>(
        &self,
    ) -> Result<RunContext<S>, IntegrationError> {
        let settings = S::deserialize(self.settings.as_ref()).map_err(|e| {
            IntegrationError::fatal(format!(
                "the stored settings of integration {} do not match its settings type",
                self.run.integration_id
            ))
            .with_source(e)
        })?;
        Ok(self.with_settings(Arc::new(settings), false))
    }
}

impl AnyContext {
    /// The context with its settings as `S`: the type its service declared.
    pub fn typed<S: Send + Sync + 'static>(&self) -> Result<RunContext<S>, IntegrationError> {
        let settings = self.settings.clone().downcast::<S>().map_err(|_| {
            IntegrationError::fatal(format!(
                "the run context of integration {} holds settings of another type",
                self.run.integration_id
            ))
        })?;
        Ok(self.with_settings(settings, self.settings_changed))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn ctx(
        onboarding: bool,
        last: Option<DateTime<Utc>>,
        checkpoints: &[(&str, DateTime<Utc>)],
    ) -> RunContext {
        RunContext::new(
            RunInfo {
                integration_id: Uuid::nil(),
                tenant_id: Uuid::nil(),
                platform: "p".into(),
                run_id: Uuid::nil(),
                onboarding,
                credentials: Credentials::default(),
                last_processed_at: last,
                checkpoints: checkpoints
                    .iter()
                    .map(|(s, at)| ((*s).to_owned(), *at))
                    .collect(),
                check_overlap: Duration::from_secs(600),
                http: HttpPool::new(Arc::default(), Duration::from_secs(5)),
            },
            json!({"n": 1}),
            Value::Null,
        )
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn a_check_reads_each_source_from_its_checkpoint_with_the_overlap() {
        let c = ctx(
            false,
            Some(at(5_000)),
            &[("a", at(3_000)), ("b", at(4_000))],
        );
        assert_eq!(c.window_of("a").since, Some(at(2_400)));
        assert_eq!(c.window_of("b").since, Some(at(3_400)));
        assert!(
            c.window_of("never-read").is_everything(),
            "a source never read is read whole"
        );
        assert!(c.window_of("a").includes(at(2_400)) && !c.window_of("a").includes(at(2_399)));
    }

    #[test]
    fn onboarding_reads_everything_and_an_old_integration_reads_from_its_last_run() {
        assert!(
            ctx(true, Some(at(5_000)), &[("a", at(3_000))])
                .window_of("a")
                .is_everything()
        );
        assert_eq!(
            ctx(false, Some(at(5_000)), &[]).window_of("a").since,
            Some(at(4_400))
        );
        assert!(ctx(false, None, &[]).window_of("a").is_everything());
    }

    #[test]
    fn settings_are_parsed_once_erased_and_typed_again() {
        #[derive(Debug, serde::Deserialize, PartialEq)]
        struct S {
            n: u32,
        }
        let typed = ctx(false, None, &[]).parse::<S>().unwrap();
        assert_eq!(typed.settings(), &S { n: 1 });
        let erased = typed.erase();
        assert_eq!(erased.typed::<S>().unwrap().settings().n, 1);
        assert!(erased.typed::<String>().is_err());
        let bad = ctx(false, None, &[]).parse::<String>().unwrap_err();
        assert!(
            bad.to_string().contains("do not match its settings type"),
            "{bad}"
        );
    }
}
