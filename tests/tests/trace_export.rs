//! Issue 12: trace spans per run and stream, exported through OpenTelemetry when an endpoint is
//! configured — the real `tributary-worker` binary, `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a
//! collector in this process that accepts OTLP over HTTP (`POST /v1/traces`, protobuf).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use sqlx::PgPool;
use tributary::queue::{PgQueue, PgQueueConfig};
use tributary::store::runs::RunState;
use tributary::testkit::eventually;

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    service: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: BTreeMap<String, String>,
}

type Spans = Arc<Mutex<Vec<Received>>>;

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

/// `POST /v1/traces`: an OTLP export request, kept span by span.
async fn receive(State(spans): State<Spans>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/x-protobuf");
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    if !protobuf {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE;
    }
    let mut received = spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.push(Received {
                    name: span.name,
                    service: service.clone(),
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    StatusCode::OK
}

/// A collector on an ephemeral port: its endpoint and what it received.
async fn collector() -> (String, Spans) {
    let spans = Spans::default();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (endpoint, spans)
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_worker_exports_a_span_per_run_and_per_stream_to_the_configured_collector(pool: PgPool) {
    let (endpoint, spans) = collector().await;
    let server = forum(Duration::ZERO).await;
    let h = harness(pool.clone());
    let (integration, run) = connect(&h, &server).await;
    let queue = PgQueue::new(pool.clone(), PgQueueConfig::default());
    tributary::handoff::enqueue_run(&pool, &queue, run.id)
        .await
        .unwrap();

    let env = with(
        worker_env(&pool, "worker-otel"),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ],
    );
    let mut worker = Proc::spawn(WORKER, "worker-otel", &env);
    wait_for_run(&h, run.id, RunState::Processed, Duration::from_secs(60)).await;
    let streams = h.streams(run.id).await;
    assert!(streams.len() > 1, "{streams:?}");

    let run_id = run.id.to_string();
    let of_run = |name: &str| -> Vec<Received> {
        spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == name && s.attributes.get("run_id") == Some(&run_id))
            .cloned()
            .collect()
    };
    let mut stored: Vec<String> = streams.iter().map(|s| s.id.to_string()).collect();
    stored.sort();
    let ids = |spans: &[Received]| {
        let mut ids: Vec<String> = spans
            .iter()
            .map(|s| s.attributes["stream_id"].clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    // a span per claim of the run (one, unless it was deferred) and per stream processed
    let (run_spans, stream_spans) = eventually(
        Duration::from_secs(30),
        "the run's span and a span per stream at the collector",
        || async {
            let runs = of_run("run");
            let streams_seen = of_run("stream");
            (!runs.is_empty() && ids(&streams_seen) == stored).then_some((runs, streams_seen))
        },
    )
    .await;

    for run_span in &run_spans {
        assert_eq!(run_span.service, "tributary-worker");
        assert_eq!(
            run_span.attributes.get("integration_id"),
            Some(&integration.id.to_string())
        );
        assert_eq!(
            run_span.attributes.get("platform"),
            Some(&integration.platform)
        );
        assert_eq!(
            run_span.attributes.get("onboarding").map(String::as_str),
            Some("true")
        );
    }
    for stream in &stream_spans {
        let parent = run_spans
            .iter()
            .find(|r| r.span_id == stream.parent_span_id)
            .unwrap_or_else(|| panic!("{stream:?} is under none of the run's spans"));
        assert_eq!(stream.trace_id, parent.trace_id, "in the run's trace");
        assert_eq!(stream.service, "tributary-worker");
        assert_eq!(
            stream.attributes.get("platform"),
            Some(&integration.platform)
        );
    }

    worker.signal("TERM");
    let (code, _) = worker.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, Some(0), "{}", worker.log());
    assert!(
        worker.log().contains("exporting traces"),
        "{}",
        worker.log()
    );
}
