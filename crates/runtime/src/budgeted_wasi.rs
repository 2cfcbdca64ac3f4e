//! The WASI functions that make the host hold something for a guest, replaced by versions
//! that charge the instance's [`crate::budget::HostBudget`] first: TCP socket creation, the wasi:http
//! calls that hold header bytes or body buffers, and `to-debug-string` (whose text must
//! never carry a host backtrace).

use crate::budget::{BODY_COST, FIELDS_COST, entry_bytes, fields_bytes};
use crate::sandbox::SandboxState;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::bindings::sockets::network::{self, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::tcp_create_socket;
use wasmtime_wasi::sockets::WasiSocketsCtxView;
use wasmtime_wasi_http::p2::bindings::http::types::{self as http, HeaderError};
use wasmtime_wasi_http::{FieldMap, WasiHttpView};

// The interfaces wasmtime-wasi 48 defines; a guest importing any 0.2.x version is served
// by these. Redefining a function under these names replaces wasmtime's own.
const TCP_CREATE_SOCKET: &str = "wasi:sockets/tcp-create-socket@0.2.12";
const HTTP_TYPES: &str = "wasi:http/types@0.2.12";
const IO_ERROR: &str = "wasi:io/error@0.2.12";

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
