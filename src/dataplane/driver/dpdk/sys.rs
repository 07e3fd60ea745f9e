//! Raw DPDK bindings, generated at build time by the top-level `build.rs`
//! (bindgen over `shim.h`) into `$OUT_DIR/dpdk_bindings.rs`; never committed.
//!
//! Rules: nothing outside `dataplane::driver::dpdk` uses these; the safe
//! wrappers in `eal`, `port`, `mbuf` are the interface. `rvs_*` functions
//! are the C shim's out-of-line copies of DPDK's `static inline` ones.
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    missing_docs,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks
)]

include!(concat!(env!("OUT_DIR"), "/dpdk_bindings.rs"));
