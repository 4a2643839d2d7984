//! The fault-injection suite (issue 8): a realistic onboarding — several Example Forum
//! integrations, each its own tenant and fake forum, a `channels` root publishing child streams,
//! dozens (quick) to hundreds (soak) of pages — processed by the real `tributary-worker` and
//! `tributary-tick-generator` binaries while faults are injected, then one invariant checked
//! (`harness::Onboarding::check`): every expected activity and member stored exactly once, every
//! run `processed` (or `error` only where the scenario makes a stream fail for good, its reason
//! stored), no run or stream left active, no message unaccounted for.
//!
//! Seeded: each scenario prints its seed; `TRIBUTARY_FAULT_SEED=N` replays it (the order in
//! which concurrent requests reach the fault dice still varies). `TRIBUTARY_SOAK=1` runs the
//! long version and the scenarios that fail until their defect is fixed (`scripts/soak`);
//! `TRIBUTARY_FAULT_REPORT=FILE` collects the one-line result of each scenario. RELIABILITY.md
//! lists the scenarios and their measured results.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod chaos;
mod clocks;
mod crashes;
mod harness;
mod hooks;
mod outages;
mod platform;
mod queue_outages;
mod secrets;
mod throwaway_pg;
mod workers;
