//! Tributary: a framework and runtime for pulling community and activity data out of third-party
//! platforms without losing or duplicating a record.
//!
//! An integration implements [`IntegrationService`]; the [`IntegrationProcessor`] does the rest:
//! leases with fencing, one transaction per stream outcome, pagination, retries with backoff,
//! rate-limit deferrals, global limits counted in PostgreSQL.

pub mod admin;
pub mod clock;
pub mod context;
pub mod db;
pub mod delivery;
pub mod error;
pub mod events;
pub mod handoff;
pub mod http;
pub mod keyring;
pub mod maintenance;
pub mod messages;
pub mod otel;
pub mod processor;
pub mod queue;
pub mod records;
pub mod registry;
pub mod runtime;
pub mod secret;
pub mod service;
pub mod settings;
pub mod startup;
pub mod store;
pub mod stream;
pub mod subscriptions;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use async_trait::async_trait;
pub use context::{RunContext, Window};
pub use error::{ErrorKind, ErrorRecord, IntegrationError, SettingsError};
pub use processor::{IntegrationProcessor, ProcessorConfig, RunOutcome};
pub use records::{Activity, Member, Operation, OptionalText};
pub use registry::Registry;
pub use secret::{Credentials, Secret};
pub use service::{
    CheckSchedule, DynService, GlobalLimit, IntegrationService, RetryBackoff, ServiceConfig,
};
pub use settings::{Check, CredentialField, Settings};
pub use stream::{NewStream, Stream, StreamOutcome};

/// The workspace's migrations, embedded.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
