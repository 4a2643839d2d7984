//! Trace export through OpenTelemetry: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the long-running binaries send their spans — a
//! `run` span per claim of a run, a `stream` span per stream inside it, with the run id, stream
//! id and platform as attributes — to an OTLP collector over HTTP (protobuf, `/v1/traces`), in
//! batches, from a thread of the SDK's own. Without the variable nothing is installed and logging
//! is exactly [`crate::runtime::init_tracing`]'s.
//!
//! The standard variables apply: `OTEL_EXPORTER_OTLP_HEADERS` / `_TRACES_HEADERS` (e.g. an API
//! key), `OTEL_EXPORTER_OTLP_TIMEOUT` / `_TRACES_TIMEOUT` (milliseconds, default 10 s),
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` (and `_ARG`),
//! `OTEL_BSP_SCHEDULE_DELAY` and the other `OTEL_BSP_*`, and `OTEL_SDK_DISABLED=true`. Only
//! `http/protobuf` is built (no gRPC stack): another `OTEL_EXPORTER_OTLP_PROTOCOL` is warned
//! about and ignored. `TRIBUTARY_OTEL_FILTER` chooses the spans exported (an `EnvFilter`,
//! default `info` without the HTTP stacks' own).
//!
//! Requests go out with the workspace's reqwest client (rustls), spawned on the process's tokio
//! runtime: the SDK's batch processor exports from a plain thread.

use std::io::IsTerminal;
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// What is exported when `TRIBUTARY_OTEL_FILTER` says nothing: Tributary's spans, not those of
/// the HTTP stacks (the exporter's own requests among them).
const DEFAULT_EXPORT_FILTER: &str =
    "info,sqlx=warn,h2=off,hyper=off,hyper_util=off,reqwest=off,tower=off,opentelemetry=off";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The process's trace export, if one is configured. Shut it down before exiting: the spans
/// still in its batch are sent then.
#[derive(Debug, Default)]
#[must_use = "dropping it does not flush the spans not sent yet: call `shutdown`"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exports(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends what is still batched and stops the export (off the async threads: the SDK
    /// blocks while the last batch goes out on this runtime).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the last spans could not be exported"),
            Err(e) => tracing::warn!(error = %e, "stopping the trace export failed"),
        }
    }
}

/// [`crate::runtime::init_tracing`], and the export of spans as `service_name` when an OTLP
/// endpoint is configured (see the module docs). Call it from within the tokio runtime.
pub fn init_tracing_and_export(default_filter: &str, service_name: &'static str) -> Telemetry {
    let log_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(log_filter);
    let (provider, problem) = match provider(service_name) {
        Ok(provider) => (provider, None),
        Err(problem) => (None, Some(problem)),
    };
    let export = provider.as_ref().map(|provider| {
        let filter = std::env::var("TRIBUTARY_OTEL_FILTER")
            .ok()
            .and_then(|f| EnvFilter::try_new(f).ok())
            .unwrap_or_else(|| EnvFilter::new(DEFAULT_EXPORT_FILTER));
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("tributary"))
            .with_filter(filter)
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(export)
        .init();
    if let Some(problem) = problem {
        tracing::warn!("traces are not exported: {problem}");
    } else if provider.is_some() {
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Ok(protocol) = std::env::var(name)
                && protocol.trim() != "http/protobuf"
            {
                tracing::warn!("{name}={protocol} is not built; exporting traces as http/protobuf");
            }
        }
        tracing::info!(endpoint = %endpoint().unwrap_or_default(), "exporting traces (OTLP over HTTP)");
    }
    Telemetry { provider }
}

/// The configured endpoint, if any (the traces' own first).
fn endpoint() -> Option<String> {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
}

/// The tracer provider, when an endpoint is configured and the SDK not disabled.
fn provider(service_name: &'static str) -> Result<Option<SdkTracerProvider>, String> {
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if disabled || endpoint().is_none() {
        return Ok(None);
    }
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "no tokio runtime to send them from".to_owned())?;
    let timeout = [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok()?.trim().parse::<u64>().ok())
    .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(timeout)
        .with_http_client(OnRuntime { client, runtime })
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service_name);
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

/// Sends the exporter's requests with reqwest on the process's runtime.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let request: reqwest::Request = request.try_into()?;
        self.runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await?;
                let mut answer = Response::builder().status(status).body(body)?;
                *answer.headers_mut() = headers;
                Ok::<_, HttpError>(answer)
            })
            .await?
    }
}
