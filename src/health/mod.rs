//! health — real-server health checks with keepalived's semantics, run by
//! one control thread of `lbd` (never by a worker).
//!
//! * [`conf`] — the YAML keywords (keepalived's names and defaults) and
//!   their resolution; a leaf that `ctl::config` embeds.
//! * [`state`] — keepalived's checker state machine, pure (virtual time in
//!   tests), plus quorum/hysteresis and rvs's rise/fall damping.
//! * [`checker`] — one check of each type as an async function (what
//!   "alive" means per checker).
//! * [`service`] — the checker thread (a current-thread tokio runtime with
//!   a task per checker) and the manager thread that publishes verdicts,
//!   quorum and sorry servers through the Control and runs the scripts.
//!
//! Ownership rule between the checker and the operator: the checker owns
//! "alive" — a per-real-server health flag kept in the
//! [`Control`](crate::ctl::server::Control); a dead real server is left out
//! of the published snapshot (as IPVS's DEL_DEST: its connections are
//! handled as after `lbctl -d`), or kept at weight 0 with
//! `inhibit_on_failure`. The operator owns the weight and the set of real
//! servers: an `lbctl -e` weight edit on a dead server is kept and takes
//! effect when it comes back; `lbctl -d` of a checked server drops its
//! health flag and stops its checks; a reload keeps the health state of the
//! real servers it does not change.

pub mod checker;
pub mod conf;
pub mod service;
pub mod state;
