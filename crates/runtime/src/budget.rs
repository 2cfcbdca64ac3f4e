//! What a guest makes the host hold on its behalf, bounded per instance: TCP sockets
//! (`limits.sockets`), host objects (`limits.host_resources`) and the bytes of wasi:http
//! fields and unsent body buffers (`limits.host_memory`). Linear memory is the limiter's.
//!
//! wasmtime-wasi caps each `fields` (128 KiB) and each `get-random-bytes`, not how many a
//! guest holds, so a 16 MiB guest could make the host hold gigabytes. The few wasi
//! functions that make the host allocate for the guest are wrapped here: each charges what
//! it may add; when the charges pass the budget, the instance's resource table is counted
//! again (drops give bytes back) and a call still over it is refused.

use crate::audit::Audit;
use crate::sandbox::SandboxState;
use membrane_manifest::{ByteSize, Limits};
use std::sync::Arc;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable, ResourceTableError};
use wasmtime_wasi::p2::TcpSocket;
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::tcp_create_socket;
use wasmtime_wasi::sockets::WasiSocketsCtxView;
use wasmtime_wasi_http::p2::bindings::http::types::{self as http, HeaderError};
use wasmtime_wasi_http::p2::types::{HostOutgoingRequest, HostOutgoingResponse};
use wasmtime_wasi_http::{FieldMap, WasiHttpView};

// The interfaces wasmtime-wasi 48 defines; a guest importing any 0.2.x version is served
// by these. Redefining a function under these names replaces wasmtime's own.
const TCP_CREATE_SOCKET: &str = "wasi:sockets/tcp-create-socket@0.2.12";
const HTTP_TYPES: &str = "wasi:http/types@0.2.12";
const IO_ERROR: &str = "wasi:io/error@0.2.12";

/// What an empty `fields` costs the host: its table entry and an empty `HeaderMap`.
const FIELDS_COST: u64 = 256;
/// What each header name or value costs beyond its bytes (`FieldMap`'s own accounting).
const ENTRY_COST: u64 = 64;
/// What an outgoing body may buffer: wasmtime-wasi-http holds one chunk in its channel and
/// the one being written.
const BODY_COST: u64 = 2 * wasmtime_wasi_http::p2::DEFAULT_OUTGOING_BODY_CHUNK_SIZE as u64;

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
    sockets: usize,
    bytes: u64,
    /// Bytes held at the last count plus everything charged since: never below the truth.
    charged: u64,
    /// Refusals already audited, so a guest refused in a loop writes one record each.
    audited_sockets: bool,
}

impl HostBudget {
    pub fn new(component: Arc<str>, limits: &Limits, tcp_granted: bool, audit: &Audit) -> Self {
        HostBudget {
            component,
            audit: audit.clone(),
            tcp_granted,
            sockets: limits.sockets as usize,
            bytes: limits.host_memory_bytes(),
            charged: 0,
            audited_sockets: false,
        }
    }

    /// Charges `bytes` about to be held, counting the table again when the charges pass
    /// the budget; refuses when the count still does.
    fn charge(&mut self, table: &mut ResourceTable, bytes: u64) -> Result<(), HostMemoryExceeded> {
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

    /// Why a new TCP socket is refused, if it is: no grant, or as many open as allowed.
    fn refuse_socket(&mut self, table: &mut ResourceTable) -> Option<ErrorCode> {
        let (code, why) = if !self.tcp_granted {
            (ErrorCode::AccessDenied, "no grants.allow_tcp: a socket needs a TCP grant".to_string())
        } else if table.iter_mut().filter(|entry| entry.is::<TcpSocket>()).count() >= self.sockets {
            (
                ErrorCode::NewSocketLimit,
                format!("the instance holds {} sockets, its limits.sockets (--max-sockets)", self.sockets),
            )
        } else {
            return None;
        };
        if !std::mem::replace(&mut self.audited_sockets, true) {
            self.audit.record(&self.component, "denied", "create-tcp-socket", &why);
        }
        Some(code)
    }
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

fn fields_bytes(fields: &FieldMap) -> u64 {
    let names: u64 = fields.keys().map(|name| name.as_str().len() as u64 + ENTRY_COST).sum();
    let values: u64 = fields.values().map(|value| value.len() as u64 + ENTRY_COST).sum();
    FIELDS_COST + names + values
}

fn entry_bytes(name: &str, value: &[u8]) -> u64 {
    (name.len() + value.len()) as u64 + 2 * ENTRY_COST
}

/// Replaces wasmtime's socket creation, the wasi:http calls that make the host hold
/// bytes, and `to-debug-string` (whose text must not carry host backtraces) with budgeted
/// versions. Call after the WASI and wasi:http interfaces are linked.
pub fn add_to_linker(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.instance(TCP_CREATE_SOCKET)?.func_wrap(
        "create-tcp-socket",
        |mut store: StoreContextMut<'_, SandboxState>, (family,): (IpAddressFamily,)| {
            let state = store.data_mut();
            if let Some(code) = state.budget.refuse_socket(&mut state.table) {
                return Ok((Err(code),));
            }
            let mut view = WasiSocketsCtxView { ctx: state.wasi.sockets(), table: &mut state.table };
            match tcp_create_socket::Host::create_tcp_socket(&mut view, family) {
                Ok(socket) => Ok((Ok(socket),)),
                Err(e) => Ok((Err(network::Host::convert_error_code(&mut view, e)?),)),
            }
        },
    )?;

    let mut types = linker.instance(HTTP_TYPES)?;
    types.func_wrap("[constructor]fields", |mut store: StoreContextMut<'_, SandboxState>, (): ()| {
        let state = store.data_mut();
        state.budget.charge(&mut state.table, FIELDS_COST)?;
        Ok((http::HostFields::new(&mut state.http())?,))
    })?;
    types.func_wrap(
        "[static]fields.from-list",
        |mut store: StoreContextMut<'_, SandboxState>, (entries,): (Vec<(String, Vec<u8>)>,)| {
            let state = store.data_mut();
            let bytes = FIELDS_COST + entries.iter().map(|(name, value)| entry_bytes(name, value)).sum::<u64>();
            state.budget.charge(&mut state.table, bytes)?;
            let mut view = state.http();
            let result = http::HostFields::from_list(&mut view, entries);
            Ok((header_result(&mut view, result)?,))
        },
    )?;
    types.func_wrap(
        "[method]fields.append",
        |mut store: StoreContextMut<'_, SandboxState>, (fields, name, value): (Resource<FieldMap>, String, Vec<u8>)| {
            let state = store.data_mut();
            state.budget.charge(&mut state.table, entry_bytes(&name, &value))?;
            let mut view = state.http();
            let result = http::HostFields::append(&mut view, fields, name, value);
            Ok((header_result(&mut view, result)?,))
        },
    )?;
    types.func_wrap(
        "[method]fields.set",
        |mut store: StoreContextMut<'_, SandboxState>,
         (fields, name, values): (Resource<FieldMap>, String, Vec<Vec<u8>>)| {
            let state = store.data_mut();
            let bytes = values.iter().map(|value| entry_bytes(&name, value)).sum();
            state.budget.charge(&mut state.table, bytes)?;
            let mut view = state.http();
            let result = http::HostFields::set(&mut view, fields, name, values);
            Ok((header_result(&mut view, result)?,))
        },
    )?;
    types.func_wrap(
        "[method]fields.clone",
        |mut store: StoreContextMut<'_, SandboxState>, (fields,): (Resource<FieldMap>,)| {
            let state = store.data_mut();
            let bytes = fields_bytes(state.table.get(&fields)?);
            state.budget.charge(&mut state.table, bytes)?;
            Ok((http::HostFields::clone(&mut state.http(), fields)?,))
        },
    )?;
    // A response or request may get a body that buffers a chunk: charged when it is made.
    types.func_wrap(
        "[constructor]outgoing-response",
        |mut store: StoreContextMut<'_, SandboxState>, (headers,): (Resource<FieldMap>,)| {
            let state = store.data_mut();
            state.budget.charge(&mut state.table, BODY_COST)?;
            Ok((http::HostOutgoingResponse::new(&mut state.http(), headers)?,))
        },
    )?;
    types.func_wrap(
        "[constructor]outgoing-request",
        |mut store: StoreContextMut<'_, SandboxState>, (headers,): (Resource<FieldMap>,)| {
            let state = store.data_mut();
            state.budget.charge(&mut state.table, BODY_COST)?;
            Ok((http::HostOutgoingRequest::new(&mut state.http(), headers)?,))
        },
    )?;

    // wasmtime's text is the error's `Debug`, which carries a Rust backtrace of the host
    // whenever RUST_BACKTRACE is set: the guest gets the message chain only.
    linker.instance(IO_ERROR)?.func_wrap(
        "[method]error.to-debug-string",
        |store: StoreContextMut<'_, SandboxState>, (error,): (Resource<wasmtime::Error>,)| {
            Ok((format!("{:#}", store.data().table.get(&error)?),))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// What a host error that stopped a guest means when one of these limits is its cause:
/// wasmtime's own words name neither the limit nor the fix.
pub fn explain(error: &wasmtime::Error) -> Option<String> {
    let full = error.chain().any(|cause| {
        matches!(cause.downcast_ref::<ResourceTableError>(), Some(ResourceTableError::Full))
            || cause.to_string().contains("store handle limit exceeded")
    });
    full.then(|| {
        "host resource limit reached: the component holds as many host objects (fields, streams, \
         pollables, handles, …) as its limits.host_resources allows; drop those it no longer \
         needs, or raise limits.host_resources (--max-host-resources)"
            .to_string()
    })
}

/// A header call's outcome as the guest sees it: its error, or a trap for what wasmtime
/// traps on (a `fields` over its own size cap).
fn header_result<T>(
    view: &mut wasmtime_wasi_http::WasiHttpCtxView<'_>,
    result: wasmtime_wasi_http::p2::HeaderResult<T>,
) -> wasmtime::Result<Result<T, HeaderError>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(e) => Ok(Err(http::Host::convert_header_error(view, e)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bytes: u64) -> HostBudget {
        let limits = Limits { host_memory: Some(ByteSize(bytes)), ..Limits::default() };
        HostBudget::new("c".into(), &limits, false, &Audit::default())
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
