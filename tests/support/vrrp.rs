//! VRRP helpers shared by the VRRP end-to-end tests: an lbd's instance
//! state through the real `lbctl --vrrp -o json`.

use std::time::Duration;

use super::lbd::{lbctl, Lbd};
use super::process::poll_until;

/// `lbctl --vrrp -o json` of `lbd`, parsed.
pub fn vrrp_json(lbd: &Lbd) -> serde_json::Value {
    let out = lbctl(lbd.socket(), &["--vrrp", "-o", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("lbctl --vrrp -o json: {e}: {out}"))
}

/// The state (`MASTER`, `BACKUP`, ...) of `lbd`'s first VRRP instance.
pub fn vrrp_state(lbd: &Lbd) -> String {
    vrrp_json(lbd)["instances"][0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits (bounded) until `lbd`'s first instance is in `state`; panics with
/// lbd's log otherwise.
pub fn wait_vrrp_state(lbd: &Lbd, state: &str, limit: Duration) {
    let ok = poll_until(limit, Duration::from_millis(50), || {
        (vrrp_state(lbd) == state).then_some(())
    });
    assert!(
        ok.is_some(),
        "lbd not {state} within {limit:?}:\n{}",
        lbd.log_text()
    );
}
