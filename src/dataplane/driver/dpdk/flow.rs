//! Flow-rule steering of FULLNAT replies (DESIGN §5), as DPVS's `sa_pool`
//! does it: for every local address (LIP), protocol (TCP, UDP) and worker
//! queue, one `rte_flow` rule "dst = LIP and dst port & mask == value →
//! queue". Worker `i` allocates local ports only with `lport & mask ==
//! value_i`, so replies reach the worker that owns the connection.
//!
//! Rules: best effort, all or nothing: if the device refuses any rule, the
//! rules made by that call are removed and the refusal is reported
//! ([`FlowSteering::Rejected`]), so a port never steers only part of the
//! space. Rules are made on the control thread, never on the hot path, and
//! removed when the port closes. `net_tap` turns rules into TC flower
//! filters, which cannot mask ports: it accepts only full-port or no-port
//! matches (so one worker), and refuses the per-worker masks.

use std::net::IpAddr;

use super::port::{DpdkDriver, PortId};
use super::sys;
use crate::dataplane::driver::{Driver, DriverError};
use crate::steer::LportMatch;

/// What the device made of a rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowSteering {
    /// Every rule is in place.
    Installed {
        /// Rules made (LIPs × 2 protocols × queues).
        rules: usize,
    },
    /// The device refused a rule; none of this call's rules remain.
    Rejected {
        /// The refused rule and the PMD's reason.
        reason: String,
    },
}

/// A rule on the device.
pub(crate) struct InstalledFlow(*mut sys::rte_flow);

// SAFETY: the handle is an opaque token only passed back to rte_flow_destroy
// on the control thread (under the port's mutex); DPDK does not tie it to a
// thread.
unsafe impl Send for InstalledFlow {}

impl InstalledFlow {
    pub(crate) fn destroy(self, port: PortId) -> Result<(), String> {
        let mut err = [0 as std::ffi::c_char; 256];
        // SAFETY: the handle came from rte_flow_create on this port and is
        // destroyed once (self is consumed); err is a writable buffer.
        let ret = unsafe { sys::rvs_flow_destroy(port.0, self.0, err.as_mut_ptr(), err.len()) };
        if ret == 0 {
            Ok(())
        } else {
            Err(c_buf_text(&err))
        }
    }
}

fn c_buf_text(buf: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl DpdkDriver {
    /// Install the FULLNAT reply rules: for every LIP in `lips`, for TCP and
    /// UDP, and for every queue `q`, "dst = LIP, dst port matches
    /// `per_queue[q]` → queue q". Replaces the rules of an earlier call.
    /// `per_queue` must have one entry per queue (see
    /// [`LportMatch::owner_partition`]). Returns whether the device took
    /// them; `Err` only for a bad request.
    pub fn install_fullnat_rules(
        &self,
        lips: &[IpAddr],
        per_queue: &[LportMatch],
    ) -> Result<FlowSteering, DriverError> {
        let queues = self.caps().queues as usize;
        if per_queue.len() != queues {
            return Err(DriverError::Config(format!(
                "dpdk: {}: {} port matches for {queues} queues",
                self.caps().name,
                per_queue.len()
            )));
        }
        if let Some(m) = per_queue.iter().find(|m| m.value & !m.mask != 0) {
            return Err(DriverError::Config(format!(
                "dpdk: port match value {:#x} has bits outside mask {:#x}",
                m.value, m.mask
            )));
        }
        let port = self.port_id();
        let mut flows = self
            .shared()
            .flows
            .lock()
            .map_err(|_| DriverError::Config("dpdk: flow table poisoned".into()))?;
        for f in flows.drain(..) {
            f.destroy(port)
                .map_err(|e| DriverError::Config(format!("dpdk: rte_flow_destroy: {e}")))?;
        }
        let mut made: Vec<InstalledFlow> = Vec::new();
        for lip in lips {
            let (family, bytes): (i32, Vec<u8>) = match lip {
                IpAddr::V4(a) => (4, a.octets().to_vec()),
                IpAddr::V6(a) => (6, a.octets().to_vec()),
            };
            for proto in [libc::IPPROTO_TCP as u8, libc::IPPROTO_UDP as u8] {
                for (q, m) in per_queue.iter().enumerate() {
                    let mut handle: *mut sys::rte_flow = std::ptr::null_mut();
                    let mut err = [0 as std::ffi::c_char; 256];
                    // SAFETY: `bytes` holds 4 or 16 address bytes as
                    // `family` says; out-pointers are valid; the port is
                    // started.
                    let ret = unsafe {
                        sys::rvs_flow_fullnat(
                            port.0,
                            family,
                            bytes.as_ptr(),
                            proto,
                            m.mask,
                            m.value,
                            q as u16,
                            0,
                            &mut handle,
                            err.as_mut_ptr(),
                            err.len(),
                        )
                    };
                    if ret != 0 || handle.is_null() {
                        for f in made.drain(..) {
                            let _ = f.destroy(port);
                        }
                        let proto_name = if proto == libc::IPPROTO_TCP as u8 {
                            "tcp"
                        } else {
                            "udp"
                        };
                        return Ok(FlowSteering::Rejected {
                            reason: format!(
                                "{lip} {proto_name} dport & {:#06x} == {:#06x} -> queue {q}: {}",
                                m.mask,
                                m.value,
                                c_buf_text(&err)
                            ),
                        });
                    }
                    made.push(InstalledFlow(handle));
                }
            }
        }
        let rules = made.len();
        flows.extend(made);
        Ok(FlowSteering::Installed { rules })
    }

    /// Remove the FULLNAT reply rules.
    pub fn remove_fullnat_rules(&self) -> Result<(), DriverError> {
        let port = self.port_id();
        let mut flows = self
            .shared()
            .flows
            .lock()
            .map_err(|_| DriverError::Config("dpdk: flow table poisoned".into()))?;
        for f in flows.drain(..) {
            f.destroy(port)
                .map_err(|e| DriverError::Config(format!("dpdk: rte_flow_destroy: {e}")))?;
        }
        Ok(())
    }
}
