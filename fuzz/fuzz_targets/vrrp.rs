//! libFuzzer harness for `rvs::fuzz_targets::vrrp` (see that module for the
//! input format and the invariants asserted).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rvs::fuzz_targets::vrrp(data));
