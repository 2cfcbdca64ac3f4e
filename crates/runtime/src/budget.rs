//! What a guest makes the host hold on its behalf, bounded per instance: TCP and UDP
//! sockets, accepted connections and a listener's pending ones (`limits.sockets`), host objects (`limits.host_resources`) and the bytes of wasi:http
//! fields and unsent body buffers (`limits.host_memory`). Linear memory is the limiter's.
//!
//! wasmtime-wasi caps each `fields` (128 KiB) and each `get-random-bytes`, not how many a
//! guest holds, so a 16 MiB guest could make the host hold gigabytes. The few wasi
//! functions that make the host allocate for the guest charge what they may add (see
//! `budgeted_wasi`); when the charges pass the budget, the instance's resource table is
//! counted again (drops give bytes back) and a call still over it is refused.

use crate::audit::Audit;
use crate::net::NetPolicy;
use membrane_manifest::{ByteSize, Grants, Limits};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::bindings::sockets::network::ErrorCode;
use wasmtime_wasi::p2::{TcpSocket, UdpSocket};
// WASI 0.3's socket resources are wasmtime-wasi's shared sockets, not 0.2's wrappers of them.
use wasmtime_wasi::sockets::{TcpSocket as P3TcpSocket, UdpSocket as P3UdpSocket};
use wasmtime_wasi_http::FieldMap;
use wasmtime_wasi_http::p2::types::{HostOutgoingRequest, HostOutgoingResponse};

/// What an empty `fields` costs the host: its table entry and an empty `HeaderMap`.
pub(crate) const FIELDS_COST: u64 = 256;
/// What each header name or value costs beyond its bytes (`FieldMap`'s own accounting).
pub(crate) const ENTRY_COST: u64 = 64;
/// What an outgoing body may buffer: wasmtime-wasi-http holds one chunk in its channel and
/// the one being written.
pub(crate) const BODY_COST: u64 = 2 * wasmtime_wasi_http::p2::DEFAULT_OUTGOING_BODY_CHUNK_SIZE as u64;

/// A call refused because the instance would hold more host memory than its budget.
#[derive(Debug, thiserror::Error)]
#[error(
    "host memory limit reached: component `{component}` would make the host hold {wanted} bytes \
     of wasi:http fields and body buffers, over its {limit}; drop fields and bodies it no \
     longer needs, or raise limits.host_memory (--max-host-memory)"
)]
pub struct HostMemoryExceeded {
    pub component: String,
    pub wanted: u64,
    pub limit: ByteSize,
}

/// One instance's budget of host objects.
pub struct HostBudget {
    component: Arc<str>,
    audit: Audit,
    tcp_granted: bool,
    udp_granted: bool,
    sockets: usize,
    bytes: u64,
    /// Bytes held at the last count plus everything charged since: never below the truth.
    charged: u64,
    /// Refusals already audited (TCP, UDP, accept), so a guest refused in a loop writes
    /// one record each.
    audited_sockets: [bool; 3],
}

/// The kind of socket a guest asks the host for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NewSocket {
    Tcp,
    Udp,
    /// A connection a TCP listener accepts.
    Accepted,
}

impl HostBudget {
    pub fn new(component: Arc<str>, limits: &Limits, grants: &Grants, audit: &Audit) -> Self {
        HostBudget {
            component,
            audit: audit.clone(),
            tcp_granted: NetPolicy::tcp_granted(grants),
            udp_granted: NetPolicy::udp_granted(grants),
            sockets: limits.sockets as usize,
            bytes: limits.host_memory_bytes(),
            charged: 0,
            audited_sockets: [false; 3],
        }
    }

    /// Charges `bytes` about to be held, counting the table again when the charges pass
    /// the budget; refuses when the count still does.
    pub(crate) fn charge(&mut self, table: &mut ResourceTable, bytes: u64) -> Result<(), HostMemoryExceeded> {
        if self.charged.saturating_add(bytes) > self.bytes {
            self.charged = held_bytes(table);
        }
        let wanted = self.charged.saturating_add(bytes);
        if wanted > self.bytes {
            let refused =
                HostMemoryExceeded { component: self.component.to_string(), wanted, limit: ByteSize(self.bytes) };
            self.audit.record(&self.component, "denied", "host memory", &refused.to_string());
            return Err(refused);
        }
        self.charged = wanted;
        Ok(())
    }

    /// Why a new socket is refused, if it is: no grant for its protocol, or as many open
    /// (accepted connections included) as allowed.
    pub(crate) fn refuse_socket(&mut self, table: &mut ResourceTable, kind: NewSocket) -> Option<ErrorCode> {
        let (what, granted, grant) = match kind {
            NewSocket::Tcp => ("create-tcp-socket", self.tcp_granted, "grants.allow_tcp or grants.allow_tcp_bind"),
            NewSocket::Udp => ("create-udp-socket", self.udp_granted, "grants.allow_udp or grants.allow_udp_bind"),
            NewSocket::Accepted => ("accept", true, ""),
        };
        let (code, why) = if !granted {
            (ErrorCode::AccessDenied, format!("no socket grant for the protocol: a socket needs {grant}"))
        } else if open_sockets(table) >= self.sockets {
            (
                ErrorCode::NewSocketLimit,
                format!("the instance holds {} sockets, its limits.sockets (--max-sockets)", self.sockets),
            )
        } else {
            return None;
        };
        if !std::mem::replace(&mut self.audited_sockets[kind as usize], true) {
            self.audit.record(&self.component, "denied", what, &why);
        }
        Some(code)
    }

    /// The most connections a listener keeps pending: no more than the instance may hold.
    pub(crate) fn listen_backlog(&self, wanted: u64) -> u64 {
        wanted.min(self.sockets.max(1) as u64)
    }
}

/// TCP and UDP sockets in `table`: listeners, connections (accepted ones too) and datagram
/// sockets.
fn open_sockets(table: &mut ResourceTable) -> usize {
    table
        .iter_mut()
        .filter(|e| e.is::<TcpSocket>() || e.is::<UdpSocket>() || e.is::<P3TcpSocket>() || e.is::<P3UdpSocket>())
        .count()
}

/// Bytes of wasi:http fields and unsent body buffers in `table`. A `fields` that shares its
/// map with another (a clone not yet written to) is counted as if it held its own copy.
fn held_bytes(table: &mut ResourceTable) -> u64 {
    table
        .iter_mut()
        .map(|entry| {
            if let Some(fields) = entry.downcast_ref::<FieldMap>() {
                fields_bytes(fields)
            } else if let Some(response) = entry.downcast_ref::<HostOutgoingResponse>() {
                fields_bytes(&response.headers) + if response.body.is_some() { BODY_COST } else { 0 }
            } else if let Some(request) = entry.downcast_ref::<HostOutgoingRequest>() {
                fields_bytes(&request.headers) + if request.body.is_some() { BODY_COST } else { 0 }
            } else {
                0
            }
        })
        .sum()
}

pub(crate) fn fields_bytes(fields: &FieldMap) -> u64 {
    let names: u64 = fields.keys().map(|name| name.as_str().len() as u64 + ENTRY_COST).sum();
    let values: u64 = fields.values().map(|value| value.len() as u64 + ENTRY_COST).sum();
    FIELDS_COST + names + values
}

pub(crate) fn entry_bytes(name: &str, value: &[u8]) -> u64 {
    (name.len() + value.len()) as u64 + 2 * ENTRY_COST
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bytes: u64) -> HostBudget {
        let limits = Limits { host_memory: Some(ByteSize(bytes)), ..Limits::default() };
        HostBudget::new("c".into(), &limits, &Grants::default(), &Audit::default())
    }

    #[test]
    fn a_call_over_the_budget_is_refused_until_something_is_dropped() {
        let mut table = ResourceTable::new();
        let mut budget = budget(3 * FIELDS_COST);
        let mut held = Vec::new();
        for _ in 0..3 {
            budget.charge(&mut table, FIELDS_COST).unwrap();
            held.push(table.push(FieldMap::new_mutable(1 << 20)).unwrap());
        }
        let refused = budget.charge(&mut table, FIELDS_COST).unwrap_err();
        assert_eq!(refused.wanted, 4 * FIELDS_COST);
        // Counting the table again finds the dropped one gone.
        table.delete(held.pop().unwrap()).unwrap();
        budget.charge(&mut table, FIELDS_COST).unwrap();
    }
}
