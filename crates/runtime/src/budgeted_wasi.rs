//! The WASI functions that make the host hold something for a guest, replaced by versions
//! that charge the instance's [`crate::budget::HostBudget`] first: socket creation and
//! accepted connections (and a listener's backlog), the wasi:http
//! calls that hold header bytes or body buffers, and `to-debug-string` (whose text must
//! never carry a host backtrace).

use crate::budget::{BODY_COST, FIELDS_COST, NewSocket, entry_bytes, fields_bytes};
use crate::sandbox::SandboxState;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::tcp::HostTcpSocket;
use wasmtime_wasi::p2::bindings::sockets::{tcp_create_socket, udp_create_socket};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, SocketResult, TcpSocket};
use wasmtime_wasi::sockets::WasiSocketsCtxView;
use wasmtime_wasi_http::p2::bindings::http::types::{self as http, HeaderError};
use wasmtime_wasi_http::{FieldMap, WasiHttpView};

// The interfaces wasmtime-wasi 48 defines; a guest importing any 0.2.x version is served
// by these. Redefining a function under these names replaces wasmtime's own.
const TCP_CREATE_SOCKET: &str = "wasi:sockets/tcp-create-socket@0.2.12";
const UDP_CREATE_SOCKET: &str = "wasi:sockets/udp-create-socket@0.2.12";
const TCP: &str = "wasi:sockets/tcp@0.2.12";
/// wasmtime's backlog for a listener, before the budget clamps it.
pub(crate) const DEFAULT_BACKLOG: u64 = 128;
const HTTP_TYPES: &str = "wasi:http/types@0.2.12";
const IO_ERROR: &str = "wasi:io/error@0.2.12";

/// Replaces wasmtime's socket creation, the wasi:http calls that make the host hold
/// bytes, and `to-debug-string` (whose text must not carry host backtraces) with budgeted
/// versions. Call after the WASI and wasi:http interfaces are linked.
pub fn add_to_linker(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    add_sockets(linker)?;
    let mut types = linker.instance(HTTP_TYPES)?;
    types.func_wrap("[constructor]fields", |mut store: StoreContextMut<'_, SandboxState>, (): ()| {
        let state = store.data_mut();
        state.reach.budget.charge(&mut state.table, FIELDS_COST)?;
        Ok((http::HostFields::new(&mut state.http())?,))
    })?;
    types.func_wrap(
        "[static]fields.from-list",
        |mut store: StoreContextMut<'_, SandboxState>, (entries,): (Vec<(String, Vec<u8>)>,)| {
            let state = store.data_mut();
            let bytes = FIELDS_COST + entries.iter().map(|(name, value)| entry_bytes(name, value)).sum::<u64>();
            state.reach.budget.charge(&mut state.table, bytes)?;
            let mut view = state.http();
            let result = http::HostFields::from_list(&mut view, entries);
            Ok((header_result(&mut view, result)?,))
        },
    )?;
    types.func_wrap(
        "[method]fields.append",
        |mut store: StoreContextMut<'_, SandboxState>, (fields, name, value): (Resource<FieldMap>, String, Vec<u8>)| {
            let state = store.data_mut();
            state.reach.budget.charge(&mut state.table, entry_bytes(&name, &value))?;
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
            state.reach.budget.charge(&mut state.table, bytes)?;
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
            state.reach.budget.charge(&mut state.table, bytes)?;
            Ok((http::HostFields::clone(&mut state.http(), fields)?,))
        },
    )?;
    // A response or request may get a body that buffers a chunk: charged when it is made.
    types.func_wrap(
        "[constructor]outgoing-response",
        |mut store: StoreContextMut<'_, SandboxState>, (headers,): (Resource<FieldMap>,)| {
            let state = store.data_mut();
            state.reach.budget.charge(&mut state.table, BODY_COST)?;
            Ok((http::HostOutgoingResponse::new(&mut state.http(), headers)?,))
        },
    )?;
    types.func_wrap(
        "[constructor]outgoing-request",
        |mut store: StoreContextMut<'_, SandboxState>, (headers,): (Resource<FieldMap>,)| {
            let state = store.data_mut();
            state.reach.budget.charge(&mut state.table, BODY_COST)?;
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

/// Socket creation, accepts and the listen backlog, within the instance's socket budget.
fn add_sockets(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    linker.instance(TCP_CREATE_SOCKET)?.func_wrap(
        "create-tcp-socket",
        |mut store: StoreContextMut<'_, SandboxState>, (family,): (IpAddressFamily,)| {
            let state = store.data_mut();
            if let Some(code) = state.reach.budget.refuse_socket(&mut state.table, NewSocket::Tcp) {
                return Ok((Err(code),));
            }
            let backlog = state.reach.budget.listen_backlog(DEFAULT_BACKLOG);
            let mut view = WasiSocketsCtxView { ctx: state.reach.wasi.sockets(), table: &mut state.table };
            let created = tcp_create_socket::Host::create_tcp_socket(&mut view, family).and_then(|socket| {
                HostTcpSocket::set_listen_backlog_size(&mut view, Resource::new_borrow(socket.rep()), backlog)?;
                Ok(socket)
            });
            Ok((socket_result(&mut view, created)?,))
        },
    )?;
    linker.instance(UDP_CREATE_SOCKET)?.func_wrap_async(
        "create-udp-socket",
        |mut store: StoreContextMut<'_, SandboxState>, (family,): (IpAddressFamily,)| {
            Box::new(async move {
                let state = store.data_mut();
                if let Some(code) = state.reach.budget.refuse_socket(&mut state.table, NewSocket::Udp) {
                    return Ok((Err(code),));
                }
                let mut view = WasiSocketsCtxView { ctx: state.reach.wasi.sockets(), table: &mut state.table };
                let created = udp_create_socket::Host::create_udp_socket(&mut view, family).await;
                Ok((socket_result(&mut view, created)?,))
            })
        },
    )?;
    let mut tcp = linker.instance(TCP)?;
    // An accepted connection is a socket the instance holds like any other.
    tcp.func_wrap(
        "[method]tcp-socket.accept",
        |mut store: StoreContextMut<'_, SandboxState>, (listener,): (Resource<TcpSocket>,)| {
            let state = store.data_mut();
            if let Some(code) = state.reach.budget.refuse_socket(&mut state.table, NewSocket::Accepted) {
                return Ok((Err(code),));
            }
            let mut view = WasiSocketsCtxView { ctx: state.reach.wasi.sockets(), table: &mut state.table };
            let accepted: SocketResult<(Resource<TcpSocket>, Resource<DynInputStream>, Resource<DynOutputStream>)> =
                HostTcpSocket::accept(&mut view, listener);
            Ok((socket_result(&mut view, accepted)?,))
        },
    )?;
    // Pending connections wait in the kernel for the instance: no more than it may hold.
    tcp.func_wrap(
        "[method]tcp-socket.set-listen-backlog-size",
        |mut store: StoreContextMut<'_, SandboxState>, (socket, value): (Resource<TcpSocket>, u64)| {
            let state = store.data_mut();
            let value = if value == 0 { 0 } else { state.reach.budget.listen_backlog(value) };
            let mut view = WasiSocketsCtxView { ctx: state.reach.wasi.sockets(), table: &mut state.table };
            let result = HostTcpSocket::set_listen_backlog_size(&mut view, socket, value);
            Ok((socket_result(&mut view, result)?,))
        },
    )?;
    Ok(())
}

/// A socket call's outcome as the guest sees it: its error code, or a trap.
fn socket_result<T>(
    view: &mut WasiSocketsCtxView<'_>,
    result: SocketResult<T>,
) -> wasmtime::Result<Result<T, ErrorCode>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(e) => Ok(Err(network::Host::convert_error_code(view, e)?)),
    }
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
