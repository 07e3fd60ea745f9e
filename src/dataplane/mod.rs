//! The dataplane: drivers, the worker's burst loop, steering between
//! workers, the forwarding modes' rewrites, neighbours, routes, and the
//! runtime that runs workers on pinned threads (DESIGN §1, §3–§5).
//!
//! Rules: generic over the driver's queue type (`Worker<Q: PortQueue>`),
//! never `dyn` on the per-packet path; workers own their state and read
//! configuration only from an immutable [`snapshot::Snapshot`].

pub mod counters;
pub mod driver;
pub mod fxhash;
pub mod kernel;
pub mod local;
pub mod neigh;
pub mod ports;
pub mod replay;
pub mod route;
pub mod runtime;
pub mod snapshot;
pub mod worker;
pub mod xmit;

pub use counters::DropReason;
pub use worker::{Worker, WorkerConfig};
