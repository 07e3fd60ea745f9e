//! The DPDK poll-mode driver (feature `dpdk`): rvs's [`Driver`] and
//! [`PortQueue`] over DPDK ethdev ports, with `rte_mbuf`s as packet buffers.
//!
//! * [`eal`] — start-up ([`Eal::init`], once per process), one mempool per
//!   NUMA socket, worker registration ([`register_worker_thread`]),
//!   clean-up when the last user goes.
//! * [`port`] — [`DpdkDriver::open`] (queues, RSS, MTU, promiscuous,
//!   all-multicast, start)
//!   and the per-worker [`DpdkQueue`].
//! * [`mbuf`] — [`Mbuf`], an owned single-segment `rte_mbuf`.
//! * [`flow`] — `rte_flow` rules steering FULLNAT replies by local port
//!   ([`crate::steer::LportMatch`], the lport partition).
//! * [`sys`] — the bindgen bindings and the C shim (`shim.c`) for DPDK's
//!   `static inline` functions, built by the top-level `build.rs`.
//!
//! The pure steering functions these files program into the device (the
//! lport partition, the Toeplitz hash and RETA lookup that predict the queue
//! of a FULLNAT reply) live in the leaf [`crate::steer`] and [`crate::steer::rss`].
//!
//! Rules: all DPDK calls go through these files; the hot path (rx/tx
//! burst, alloc, free, prepend/adj/append/trim) makes no allocation, lock
//! or system call of its own. PMDs: Debian's shared DPDK build loads its
//! plugin directory by itself (see [`eal`]).
//!
//! [`Driver`]: crate::dataplane::driver::Driver
//! [`PortQueue`]: crate::dataplane::driver::PortQueue

pub mod eal;
pub mod flow;
pub mod mbuf;
pub mod port;
pub mod sys;

pub use eal::{
    current_lcore, default_pmd_dir, dpdk_version, register_worker_thread, unregister_worker_thread,
    Eal, LcoreId, PoolConfig,
};
pub use flow::FlowSteering;
pub use mbuf::Mbuf;
pub use port::{DeviceInfo, DpdkDriver, DpdkQueue, LinkStatus, PortId, QueueId};
