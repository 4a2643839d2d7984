//! The conformance suite: the scenarios every integration must pass, run against its own fake
//! platform through the real processor and PostgreSQL. An integration's test file implements
//! [`Conformance`] for a fixture and calls [`crate::conformance_suite!`]; it keeps for itself only
//! what is particular to its platform.
//!
//! ```text
//! struct Forum { server: ExampleForumServer }
//!
//! #[async_trait]
//! impl Conformance for Forum {
//!     type Service = ExampleForumIntegration;
//!     async fn start() -> Self { … }
//!     …
//! }
//!
//! tributary::conformance_suite!(Forum);
//! ```
//!
//! The scenarios:
//! * an onboarding over several pages stores exactly the platform's data (and, where the fixture
//!   knows it, with exactly the requests the data needs);
//! * a check right after changes nothing (0 new, 0 updated), and a check after new data stores
//!   just that, reading no more than the onboarding did;
//! * a 429 in the middle defers the run to the announced time; it resumes and ends exact, with no
//!   retry charged;
//! * a burst of 5xx is retried and the run ends exact;
//! * a malformed body ends its stream in `error` quoting the body, and only that stream;
//! * a refused credential ends the run in `error` with the platform's answer, and the credential is
//!   stored nowhere;
//! * a list that repeats its page forever ends in `error`, after a bounded number of requests;
//! * settings are refused field by field at connect time, creating nothing and sending nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::PgPool;

use super::{FakeServer, Fault, Harness, Reply, RunReport};
use crate::error::ErrorKind;
use crate::processor::RunOutcome;
use crate::service::IntegrationService;
use crate::store::runs::RunState;

/// What the suite needs of an integration and its fake platform.
#[async_trait]
pub trait Conformance: Send + Sync + Sized + 'static {
    type Service: IntegrationService;

    /// Starts the fake platform holding a data set that spans several pages.
    async fn start() -> Self;

    /// The integration, as the tests register it.
    fn service(&self) -> Self::Service;

    /// The fake platform's server: the suite injects faults into it and counts its requests.
    fn server(&self) -> &FakeServer;

    /// Settings that read the fake's whole data set, in small pages.
    fn settings(&self) -> Value;

    /// Credentials the fake accepts (`{}` for a platform that takes none).
    fn credentials(&self) -> Value;

    /// The source ids of every activity a complete onboarding stores.
    fn expected_activities(&self) -> BTreeSet<String>;

    /// The source ids of every member a complete onboarding stores.
    fn expected_members(&self) -> BTreeSet<String>;

    /// The exact number of requests a complete onboarding needs, where the data set says.
    fn expected_requests(&self) -> Option<usize> {
        None
    }

    /// The path (or path prefix) of a paginated list that an onboarding reads in at least two
    /// pages: the fault scenarios aim at it.
    fn list_path(&self) -> String;

    /// An answer to any page of [`Conformance::list_path`] that says there is more and
    /// repeats itself: the pagination-loop scenario serves it forever.
    fn endless_page(&self) -> Reply;

    /// Adds data to the fake for the next check to find; returns the source ids of the new
    /// activities.
    fn add_activities(&self) -> BTreeSet<String>;

    /// Credentials the fake refuses (`None` for a platform that takes none).
    fn refused_credentials(&self) -> Option<Value>;

    /// What the stored error of a refused credential must contain: the platform's answer
    /// (default: `401`; Slack answers 200 with `invalid_auth`, say).
    fn credential_refusal(&self) -> &'static str {
        "401"
    }

    /// Settings (and credentials) the integration must refuse at connect time, each with the
    /// whole message it must give.
    fn refused_settings(&self) -> Vec<Refused>;

    /// The platform's 429 (default: `Retry-After: 1`).
    fn rate_limited(&self) -> Reply {
        Reply::rate_limited(1)
    }

    /// A body that does not decode (default: truncated JSON).
    fn malformed(&self) -> Reply {
        Reply::malformed(r#"{"truncated": [{"id": "#)
    }
}

/// Settings the integration must refuse, and the message it must give.
#[derive(Debug, Clone)]
pub struct Refused {
    pub settings: Value,
    pub credentials: Value,
    pub message: String,
}

impl Refused {
    pub fn new(settings: Value, credentials: Value, message: impl Into<String>) -> Self {
        Self {
            settings,
            credentials,
            message: message.into(),
        }
    }
}

/// A started fixture and a harness with its service registered.
async fn setup<C: Conformance>(pool: PgPool) -> (Harness, C) {
    let fixture = C::start().await;
    let harness = Harness::with_service(pool, fixture.service());
    (harness, fixture)
}

fn platform<C: Conformance>(fixture: &C) -> &'static str {
    IntegrationService::platform(&fixture.service())
}

async fn onboard<C: Conformance>(h: &Harness, fixture: &C) -> RunReport {
    h.onboard(platform(fixture), fixture.settings(), fixture.credentials())
        .await
}

fn assert_exact<C: Conformance>(report: &RunReport, fixture: &C, what: &str) {
    assert_eq!(
        report.run.state,
        RunState::Processed,
        "{what}: the run ends processed: {:?} {:?}",
        report.outcomes,
        report.stream_errors()
    );
    let expected = fixture.expected_activities();
    let found = report.activity_ids();
    assert_eq!(
        found.len(),
        report.activities.len(),
        "{what}: no activity twice"
    );
    let missing: Vec<_> = expected.difference(&found).collect();
    let extra: Vec<_> = found.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: exactly the platform's activities; missing {missing:?}, unexpected {extra:?}"
    );
    let members = report.member_ids();
    let expected = fixture.expected_members();
    let missing: Vec<_> = expected.difference(&members).collect();
    let extra: Vec<_> = members.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: exactly the platform's members; missing {missing:?}, unexpected {extra:?}"
    );
}

/// An onboarding over several pages stores exactly the platform's data, once, with no retry.
pub async fn onboarding_is_exact<C: Conformance>(pool: PgPool) {
    let (h, fixture) = setup::<C>(pool).await;
    let report = onboard(&h, &fixture).await;
    assert_exact(&report, &fixture, "onboarding");
    assert!(
        fixture.expected_activities().len() >= 10,
        "the fixture's data set is too small to say anything"
    );
    assert_eq!(
        report.run.activities_created as usize,
        fixture.expected_activities().len(),
        "every activity is new"
    );
    let list = fixture.list_path();
    let pages = fixture
        .server()
        .requests()
        .iter()
        .filter(|r| r.path.starts_with(&list))
        .count();
    assert!(
        pages >= 2,
        "the data set spans several pages of `{list}`: {pages} request(s)"
    );
    assert_eq!(report.retries(), 0, "nothing failed, nothing retried");
    if let Some(expected) = fixture.expected_requests() {
        assert_eq!(
            fixture.server().request_count(),
            expected,
            "request economy: each page once, nothing else"
        );
    }
}

/// A check right after the onboarding changes nothing; after new data it stores just that,
/// reading no more than the onboarding did.
pub async fn checks_read_only_what_is_new<C: Conformance>(pool: PgPool) {
    let (h, fixture) = setup::<C>(pool).await;
    let onboarding = onboard(&h, &fixture).await;
    assert_exact(&onboarding, &fixture, "onboarding");
    let onboarding_requests = fixture.server().request_count();
    let integration = onboarding.integration.id;

    fixture.server().clear_requests();
    let check = h.check_to_end(integration).await;
    assert_eq!(check.run.state, RunState::Processed, "{:?}", check.outcomes);
    assert_eq!(
        (
            check.run.activities_created,
            check.run.activities_updated,
            check.run.members_created
        ),
        (0, 0, 0),
        "a check right after the onboarding changes nothing"
    );
    assert!(
        fixture.server().request_count() <= onboarding_requests,
        "a check reads no more than the onboarding: {} > {onboarding_requests}",
        fixture.server().request_count()
    );

    let new = fixture.add_activities();
    assert!(!new.is_empty(), "the fixture adds activities");
    fixture.server().clear_requests();
    let check = h.check_to_end(integration).await;
    assert_eq!(check.run.state, RunState::Processed, "{:?}", check.outcomes);
    assert_eq!(
        check.run.activities_created as usize,
        new.len(),
        "the check stores the new activities"
    );
    let found = check.activity_ids();
    assert!(new.is_subset(&found), "new activities stored: {new:?}");
    let mut all = fixture.expected_activities();
    all.extend(new);
    assert_eq!(found, all, "nothing lost, nothing extra");
    assert!(
        fixture.server().request_count() <= onboarding_requests,
        "a check reads no more than the onboarding"
    );
}

/// A 429 in the middle defers the run to the announced time; the run resumes and ends exact,
/// with no retry charged.
pub async fn a_rate_limit_defers_and_the_run_resumes_exact<C: Conformance>(pool: PgPool) {
    let (mut h, fixture) = setup::<C>(pool).await;
    // waits longer than this defer the run instead of holding the worker
    h.config.max_inline_wait = Duration::from_millis(100);
    fixture
        .server()
        .inject_later(Fault::on(&fixture.list_path(), 1, fixture.rate_limited()).after(1));
    let (integration, run) = h
        .connect(
            platform(&fixture),
            fixture.settings(),
            fixture.credentials(),
        )
        .await
        .unwrap_or_else(|e| panic!("connecting: {e}"));
    let (outcomes, _) = h
        .run_honouring_deferrals(run.id, Duration::from_secs(90))
        .await;
    assert!(
        outcomes.iter().any(
            |o| matches!(o, RunOutcome::Delayed { reason, .. } if reason.contains("rate limit"))
        ),
        "the 429 deferred the run: {outcomes:?}"
    );
    let report = h.report(integration.id, run.id, outcomes).await;
    assert_exact(&report, &fixture, "the resumed run");
    assert_eq!(report.retries(), 0, "a rate limit costs no retry");
}

/// A burst of 5xx is retried, and the run ends exact.
pub async fn a_burst_of_server_errors_is_retried<C: Conformance>(pool: PgPool) {
    let (h, fixture) = setup::<C>(pool).await;
    fixture
        .server()
        .inject(Fault::on(&fixture.list_path(), 2, Reply::unavailable()));
    let report = onboard(&h, &fixture).await;
    assert_exact(&report, &fixture, "after the 503s");
    assert_eq!(report.retries(), 2, "each 503 cost its stream one retry");
}

/// A malformed body ends its stream in `error`, quoting the body; the other streams finish.
pub async fn a_malformed_body_fails_its_stream_quoting_it<C: Conformance>(pool: PgPool) {
    let (h, fixture) = setup::<C>(pool).await;
    let malformed = fixture.malformed();
    let excerpt: String = String::from_utf8_lossy(&malformed.body)
        .chars()
        .take(12)
        .collect();
    fixture
        .server()
        .inject(Fault::on(&fixture.list_path(), 1, malformed));
    let report = onboard(&h, &fixture).await;
    assert_eq!(report.run.state, RunState::Error, "{:?}", report.outcomes);
    let errors = report.stream_errors();
    assert_eq!(errors.len(), 1, "only the stream that got it: {errors:?}");
    let (_, error) = &errors[0];
    assert_eq!(error.kind, ErrorKind::Fatal);
    assert!(
        error.message.contains("malformed body") && error.message.contains(&excerpt),
        "the error says so and quotes the body: {}",
        error.message
    );
    assert_eq!(error.failures, 1, "not retried: it would fail the same way");
    assert!(
        report.activities.len() < fixture.expected_activities().len(),
        "what the stream would have read is missing"
    );
    let run_error = report
        .run
        .error_record()
        .unwrap_or_else(|| panic!("the run stores its error"));
    assert!(
        run_error.message.contains("malformed body"),
        "the run's error names the cause: {}",
        run_error.message
    );
}

/// A refused credential ends the run in `error` with the platform's answer; the credential is
/// stored nowhere.
pub async fn a_refused_credential_fails_the_run_and_is_stored_nowhere<C: Conformance>(
    pool: PgPool,
) {
    let (h, fixture) = setup::<C>(pool).await;
    let Some(wrong) = fixture.refused_credentials() else {
        return;
    };
    let secrets: Vec<String> = match &wrong {
        Value::Object(map) => map
            .values()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .filter(|s| s.len() >= 4)
            .collect(),
        _ => Vec::new(),
    };
    let report = h
        .onboard(platform(&fixture), fixture.settings(), wrong)
        .await;
    assert_eq!(report.run.state, RunState::Error, "{:?}", report.outcomes);
    let errors = report.stream_errors();
    assert!(!errors.is_empty(), "a stream failed");
    for (identifier, error) in &errors {
        assert_eq!(error.kind, ErrorKind::Fatal, "`{identifier}`: {error:?}");
        assert!(
            error.message.contains(fixture.credential_refusal()),
            "`{identifier}`: the platform's refusal ({}): {}",
            fixture.credential_refusal(),
            error.message
        );
        assert_eq!(
            error.failures, 1,
            "`{identifier}`: a refusal is not retried"
        );
    }
    let stored = serde_json::to_string(&(
        report
            .streams
            .iter()
            .map(|s| (&s.identifier, &s.data, &s.page, &s.error, &s.last_record))
            .collect::<Vec<_>>(),
        &report.run.error,
        &report.run.pipeline_data,
        &report.integration.settings,
    ))
    .unwrap_or_default();
    for secret in &secrets {
        assert!(
            !stored.contains(secret.as_str()),
            "the credential is stored nowhere"
        );
    }
}

/// A list that answers the same page forever ends in `error`, after a bounded number of
/// requests.
pub async fn a_page_that_repeats_forever_ends_in_error<C: Conformance>(pool: PgPool) {
    let (h, fixture) = setup::<C>(pool).await;
    let list = fixture.list_path();
    fixture
        .server()
        .inject(Fault::on(&list, u32::MAX, fixture.endless_page()));
    let report = onboard(&h, &fixture).await;
    assert_eq!(report.run.state, RunState::Error, "{:?}", report.outcomes);
    let errors = report.stream_errors();
    assert!(
        errors
            .iter()
            .any(|(_, e)| e.message.contains("pagination") || e.message.contains("page")),
        "a stream says its pagination does not advance: {errors:?}"
    );
    let hits = fixture
        .server()
        .requests()
        .iter()
        .filter(|r| r.path.starts_with(&list))
        .count();
    assert!(
        hits <= 20,
        "the repeating page is not followed on and on: {hits} requests"
    );
}

/// Settings are refused field by field at connect time: nothing is created, nothing is sent.
pub async fn settings_are_refused_field_by_field<C: Conformance>(pool: PgPool) {
    let (h, fixture) = setup::<C>(pool).await;
    let cases = fixture.refused_settings();
    assert!(!cases.is_empty(), "the fixture lists settings to refuse");
    let platform = platform(&fixture);
    for case in cases {
        let message = h
            .refused(platform, case.settings.clone(), case.credentials.clone())
            .await;
        let expected = format!(
            "settings for platform `{platform}` refused: invalid settings: {}",
            case.message
        );
        assert_eq!(message, expected, "for {}", case.settings);
    }
    assert_eq!(h.integration_count().await, 0, "nothing is created");
    assert_eq!(
        fixture.server().request_count(),
        0,
        "nothing is sent at connect time"
    );
}

/// The suite's tests for a [`Conformance`] fixture, in a module `conformance` of the calling
/// test file. Each test gets its own database (`#[sqlx::test]`).
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:ty) => {
        mod conformance {
            use super::*;
            use $crate::testkit::conformance as suite;

            #[::sqlx::test(migrator = "tributary::MIGRATOR")]
            async fn onboarding_is_exact(pool: ::sqlx::PgPool) {
                suite::onboarding_is_exact::<$fixture>(pool).await;
            }

            #[::sqlx::test(migrator = "tributary::MIGRATOR")]
            async fn checks_read_only_what_is_new(pool: ::sqlx::PgPool) {
                suite::checks_read_only_what_is_new::<$fixture>(pool).await;
            }

            #[::sqlx::test(migrator = "tributary::MIGRATOR")]
            async fn a_rate_limit_defers_and_the_run_resumes_exact(pool: ::sqlx::PgPool) {
                suite::a_rate_limit_defers_and_the_run_resumes_exact::<$fixture>(pool).await;
            }

            #[::sqlx::test(migrator = "tributary::MIGRATOR")]
            async fn a_burst_of_server_errors_is_retried(pool: ::sqlx::PgPool) {
                suite::a_burst_of_server_errors_is_retried::<$fixture>(pool).await;
            }

            #[::sqlx::test(migrator = "tributary::MIGRATOR")]
            async fn a_malformed_body_fails_its_stream_quoting_it(pool: ::sqlx::PgPool) {
                suite::a_malformed_body_fails_its_stream_quoting_it::<$fixture>(pool).await;
            }

            #[::sqlx::test(migrator = "tributary::MIGRATOR")]
            async fn a_refused_credential_fails_the_run_and_is_stored_nowhere(
                pool: ::sqlx::PgPool,
            ) {
                suite::a_refused_credential_fails_the_run_and_is_stored_nowhere::<$fixture>(pool)
                    .await;
            }

            #[::sqlx::test(migrator = "tributary::MIGRATOR")]
            async fn a_page_that_repeats_forever_ends_in_error(pool: ::sqlx::PgPool) {
                suite::a_page_that_repeats_forever_ends_in_error::<$fixture>(pool).await;
            }

            #[::sqlx::test(migrator = "tributary::MIGRATOR")]
            async fn settings_are_refused_field_by_field(pool: ::sqlx::PgPool) {
                suite::settings_are_refused_field_by_field::<$fixture>(pool).await;
            }
        }
    };
}
