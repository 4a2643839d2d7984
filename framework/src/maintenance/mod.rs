//! Maintenance services, each small and named for its job, each with `run_once` for tests:
//!
//! * [`TickScheduler`]: processes one tick slot: a check run and a message for each due,
//!   connected integration without an active run. Driven by `tick` messages (the worker calls
//!   `run_once` for each), so it has no loop of its own.
//! * [`RunRescuer`]: sends a message again for runs that need one: leases that expired (their
//!   worker died), delayed runs whose time has come, pending runs nobody took. Runs at every tick
//!   and, in each worker, on its own interval ([`RunRescuer::run`]).
//!
//! The tick generator itself (one tick message per minute slot) is `tributary-tick-generator`.

pub mod events;
mod run_rescuer;
mod tick_scheduler;

pub use run_rescuer::{Rescued, RunRescuer, RunRescuerConfig};
pub use tick_scheduler::{FanOut, TickScheduler, TickSchedulerConfig, check_offset};

use crate::queue::QueueError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}
