//! Connection synchronisation between two directors (IPVS's sync daemon,
//! reference/keepalived.md §3): a master exports its connections, a
//! backup installs them, so a failover loses no established flow.
//!
//! * [`auth`]: the optional shared-key HMAC of messages (rvs).
//! * [`conf`]: a sync daemon's settings (`lbctl --start-daemon`, YAML
//!   `sync:`).
//! * [`export`]: what workers and the sync thread exchange — fixed-size
//!   entries in per-worker bounded lock-free rings, and their counters.
//! * [`service`]: the control thread(s): the master batches the export
//!   rings into IPVS sync v1 messages (`wire::ipvs_sync`) sent by UDP
//!   multicast within [`service::FLUSH_DELAY`]; the backup receives,
//!   validates (everything malformed, foreign or refused is counted and
//!   ignored) and hands each entry to the worker that owns its flow
//!   (`dataplane::worker::flow_owner`, the owner function of live traffic).
//!
//! Rules: workers only push to and pop from their rings (no lock,
//! allocation, log or system call); everything slow — sockets, batching,
//! validation, the owner computation — is in the sync threads, which
//! stop within the daemon's stop budget.

pub mod auth;
pub mod conf;
pub mod export;
pub mod service;
