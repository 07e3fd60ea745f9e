//! rvs — a kernel-bypass Layer-4 load balancer: the Linux Virtual Server
//! (LVS/IPVS) director rebuilt as a user-space, poll-mode packet forwarder.
//!
//! Layers, with dependencies pointing one way (see `DESIGN.md` §2):
//! `wire`, `steer` ← `conntrack`, `sched` ← `dataplane` ← `ctl` ← `daemon` ← binaries.
//! `steer` (flow ownership and RSS, pure functions) is a leaf shared by the
//! worker, the drivers' steering programs and the FULLNAT port pools.
//! `sys` (the few system calls outside the drivers, the only `unsafe`
//! outside `dataplane::driver`) is a leaf any layer may use.

pub mod announce;
pub mod conntrack;
pub mod ctl;
pub mod daemon;
pub mod dataplane;
pub mod docs;
pub mod health;
pub mod keepalived;
pub mod metrics;
pub mod sched;
pub mod steer;
pub mod sync;
pub mod sys;
pub mod vrrp;
pub mod wire;

#[doc(hidden)]
pub mod fuzz_targets;
