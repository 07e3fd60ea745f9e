//! ctl — the control plane: how operators and configuration reach the
//! data plane.
//!
//! * [`protocol`] — the length-prefixed JSON protocol between `lbctl` and
//!   `lbd` (a closed set of requests and responses).
//! * [`ipvsadm`] — ipvsadm 1.31 command lines parsed into requests, and
//!   responses printed in ipvsadm's formats (what `lbctl` sends and prints).
//!
//! The daemon side — `server` (the Unix-socket listener), `config` (the YAML
//! file) and `apply` (turning requests into data-plane updates) — is added by
//! other modules below.

#![deny(unsafe_code)]

pub mod apply;
pub mod config;
pub mod ipvsadm;
pub mod protocol;
pub mod server;
pub mod stats;
