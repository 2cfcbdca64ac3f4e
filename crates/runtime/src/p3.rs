//! WASI 0.3 (p3): telling a component that needs the component-model async ABI from one
//! that does not, and linking wasmtime-wasi's and wasmtime-wasi-http's WASI 0.3 behind the
//! same grants as 0.2 (one `WasiCtx` and one outbound HTTP policy serve both).
//!
//! Commands, HTTP handlers, middleware hops (`link::http_hop`) and links with async
//! functions, streams and futures (`link::concurrent`) run behind the same membranes as
//! WASI 0.2 components.

use crate::budget::NewSocket;
use crate::budgeted_wasi::DEFAULT_BACKLOG;
use crate::sandbox::SandboxState;
use wasmparser::{
    CanonicalFunction, CanonicalOption, Chunk, ComponentDefinedType, ComponentType, ComponentTypeDeclaration,
    InstanceTypeDeclaration, Parser, Payload, PrimitiveValType,
};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::bindings::sockets::network::ErrorCode as P2ErrorCode;
use wasmtime_wasi::p3::bindings::sockets::types::{ErrorCode, HostTcpSocket, HostUdpSocket, IpAddressFamily};
use wasmtime_wasi::p3::sockets::SocketResult;
use wasmtime_wasi::sockets::{TcpSocket, WasiSocketsCtxView};

/// The WASI 0.3 sockets interface wasmtime-wasi 48 defines.
const SOCKET_TYPES: &str = "wasi:sockets/types@0.3.0";

/// Whether the component `bytes` needs an engine with the component-model async ABI: it
/// imports or exports a WASI 0.3 interface, or it uses async functions, `stream`,
/// `future`, `error-context` or the async built-ins anywhere.
///
/// Hand-written rather than a validation with and without the async features: this reads
/// only the component-level sections (skipping core modules' code), so it costs little on
/// every start, including a warm one that never validates. A component this misreads is
/// not run wrongly: the engine's own validation still refuses it, with the feature named.
pub fn needs_async(bytes: &[u8]) -> bool {
    scan(bytes).unwrap_or(false)
}

fn scan(mut data: &[u8]) -> wasmparser::Result<bool> {
    let mut parser = Parser::new(0);
    loop {
        let (payload, consumed) = match parser.parse(data, true)? {
            Chunk::Parsed { consumed, payload } => (payload, consumed),
            Chunk::NeedMoreData(_) => return Ok(false),
        };
        data = &data[consumed..];
        let found = match payload {
            // The outer parser has stepped over the nested binary's header only.
            // A truncated file may claim more than is left: it is not read further here, and
            // the engine's validation says what is wrong with it.
            Payload::ModuleSection { unchecked_range, .. } => match data.get(unchecked_range.len()..) {
                Some(rest) => {
                    data = rest;
                    false
                }
                None => return Ok(false),
            },
            Payload::ComponentSection { unchecked_range, .. } => {
                let Some((nested, rest)) = data.split_at_checked(unchecked_range.len()) else {
                    return Ok(false);
                };
                data = rest;
                scan(nested)?
            }
            Payload::ComponentImportSection(reader) => {
                reader.into_iter().any(|i| i.is_ok_and(|i| is_wasi_p3(i.name.name)))
            }
            Payload::ComponentExportSection(reader) => {
                reader.into_iter().any(|e| e.is_ok_and(|e| is_wasi_p3(e.name.name)))
            }
            Payload::ComponentTypeSection(reader) => reader.into_iter().any(|t| t.is_ok_and(|t| type_is_async(&t))),
            Payload::ComponentCanonicalSection(reader) => {
                reader.into_iter().any(|f| f.is_ok_and(|f| canon_is_async(&f)))
            }
            Payload::End(_) => return Ok(false),
            _ => false,
        };
        if found {
            return Ok(true);
        }
    }
}

/// `wasi:cli/run@0.3.0` and every other WASI 0.3 interface (its release candidates too).
fn is_wasi_p3(name: &str) -> bool {
    name.starts_with("wasi:") && name.split_once('@').is_some_and(|(_, version)| version.starts_with("0.3."))
}

fn type_is_async(ty: &ComponentType<'_>) -> bool {
    match ty {
        ComponentType::Defined(
            ComponentDefinedType::Stream(_)
            | ComponentDefinedType::Future(_)
            | ComponentDefinedType::Primitive(PrimitiveValType::ErrorContext),
        ) => true,
        ComponentType::Func(func) => func.async_,
        ComponentType::Component(decls) => decls.iter().any(|d| match d {
            ComponentTypeDeclaration::Type(t) => type_is_async(t),
            ComponentTypeDeclaration::Import(i) => is_wasi_p3(i.name.name),
            ComponentTypeDeclaration::Export { name, .. } => is_wasi_p3(name.name),
            _ => false,
        }),
        ComponentType::Instance(decls) => decls.iter().any(|d| match d {
            InstanceTypeDeclaration::Type(t) => type_is_async(t),
            _ => false,
        }),
        _ => false,
    }
}

/// Lifting and lowering with the async option, and every built-in of the async ABI.
fn canon_is_async(func: &CanonicalFunction) -> bool {
    let has_async = |options: &[CanonicalOption]| {
        options.iter().any(|o| matches!(o, CanonicalOption::Async | CanonicalOption::Callback(_)))
    };
    match func {
        CanonicalFunction::Lift { options, .. } | CanonicalFunction::Lower { options, .. } => has_async(options),
        CanonicalFunction::ResourceNew { .. }
        | CanonicalFunction::ResourceDrop { .. }
        | CanonicalFunction::ResourceRep { .. } => false,
        _ => true,
    }
}

/// Adds WASI 0.3 to `linker`, beside WASI 0.2 (a Rust guest's std still imports 0.2), on
/// the same `WasiCtx`: the grants, the socket address check and its audit are shared. The
/// HTTP client (`wasi:http/client@0.3.0`) sends through the same hooks as 0.2's
/// outgoing-handler, so one allowlist, address vetting and audit cover both.
/// (WASI 0.3's `exit-with-code` is stable and linked; `wasi:clocks/timezone`, unstable,
/// has no implementation in wasmtime-wasi 48 and stays unlinked: see `capability`.)
pub(crate) fn add_to_linker(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p3::add_to_linker(linker)?;
    wasmtime_wasi_http::p3::add_to_linker(linker)?;
    add_budgeted_socket(linker)
}

/// wasmtime's WASI 0.3 socket creation, replaced (as `budgeted_wasi` does for 0.2) by one
/// that asks the instance's budget first: otherwise a 0.3 guest's sockets would escape
/// `limits.sockets`, and a creation refused for want of a grant would go unaudited.
fn add_budgeted_socket(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(SOCKET_TYPES)?;
    types.func_wrap(
        "[static]tcp-socket.create",
        |mut store: StoreContextMut<'_, SandboxState>, (family,): (IpAddressFamily,)| {
            let state = store.data_mut();
            if let Some(code) = state.reach.budget.refuse_socket(&mut state.table, NewSocket::Tcp) {
                return Ok((Err(p3_code(code)),));
            }
            let backlog = state.reach.budget.listen_backlog(DEFAULT_BACKLOG);
            let mut view = WasiSocketsCtxView { ctx: state.reach.wasi.sockets(), table: &mut state.table };
            let created = HostTcpSocket::create(&mut view, family).and_then(|socket| {
                HostTcpSocket::set_listen_backlog_size(&mut view, Resource::new_borrow(socket.rep()), backlog)?;
                Ok(socket)
            });
            Ok((guest_result(created)?,))
        },
    )?;
    // Pending connections wait in the kernel for the instance: no more than it may hold.
    types.func_wrap(
        "[method]tcp-socket.set-listen-backlog-size",
        |mut store: StoreContextMut<'_, SandboxState>, (socket, value): (Resource<TcpSocket>, u64)| {
            let state = store.data_mut();
            let value = if value == 0 { 0 } else { state.reach.budget.listen_backlog(value) };
            let mut view = WasiSocketsCtxView { ctx: state.reach.wasi.sockets(), table: &mut state.table };
            Ok((guest_result(HostTcpSocket::set_listen_backlog_size(&mut view, socket, value))?,))
        },
    )?;
    types.func_wrap_async(
        "[static]udp-socket.create",
        |mut store: StoreContextMut<'_, SandboxState>, (family,): (IpAddressFamily,)| {
            Box::new(async move {
                let state = store.data_mut();
                if let Some(code) = state.reach.budget.refuse_socket(&mut state.table, NewSocket::Udp) {
                    return Ok((Err(p3_code(code)),));
                }
                let mut view = WasiSocketsCtxView { ctx: state.reach.wasi.sockets(), table: &mut state.table };
                Ok((guest_result(HostUdpSocket::create(&mut view, family).await)?,))
            })
        },
    )
}

/// A WASI 0.3 socket call's outcome as the guest sees it: its error code, or a trap.
fn guest_result<T>(result: SocketResult<T>) -> wasmtime::Result<Result<T, ErrorCode>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(error) => Ok(Err(error.downcast()?)),
    }
}

/// The WASI 0.3 code for a refusal of the budget (which speaks WASI 0.2).
fn p3_code(code: P2ErrorCode) -> ErrorCode {
    match code {
        P2ErrorCode::AccessDenied => ErrorCode::AccessDenied,
        // WASI 0.3 dropped 0.2's `new-socket-limit`; the text keeps its name.
        _ => ErrorCode::Other(Some("new-socket-limit".into())),
    }
}

/// The component-model feature named in wasmtime's refusal of a component whose binary
/// uses one this engine does not enable, such as `error-context` or stackful async.
pub(crate) fn missing_feature(error: &str) -> Option<String> {
    const NEEDS: &str = "requires the component model ";
    let at = error.find(NEEDS)?;
    let feature = error[at + NEEDS.len()..].split(" feature").next()?;
    // wasmparser names the construct first when it can: "`stream` requires ...".
    let what = error[..at].trim_end().rsplit(": ").next().unwrap_or_default();
    Some(match what.starts_with('`') {
        true => format!("{what} (the component model {feature} feature)"),
        false => format!("the component model {feature} feature"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_p3_names_are_told_from_p2_ones() {
        assert!(is_wasi_p3("wasi:cli/run@0.3.0"));
        assert!(is_wasi_p3("wasi:clocks/timezone@0.3.0-rc-2025-09-16"));
        assert!(!is_wasi_p3("wasi:cli/run@0.2.6"));
        assert!(!is_wasi_p3("example:x/y@0.3.0"));
    }

    #[test]
    fn a_p2_component_does_not_need_async() {
        let p2 = wat::parse_str(r#"(component (import "wasi:cli/stdout@0.2.0" (instance)))"#).unwrap();
        assert!(!needs_async(&p2));
        let p3 = wat::parse_str(r#"(component (import "wasi:cli/stdout@0.3.0" (instance)))"#).unwrap();
        assert!(needs_async(&p3));
        let stream = wat::parse_str(r#"(component (type (stream u8)))"#).unwrap();
        assert!(needs_async(&stream));
    }

    #[test]
    fn a_truncated_nested_module_or_component_is_not_read_past_its_end() {
        let header = wat::parse_str("(component)").unwrap();
        for section in [1u8, 4] {
            // A section that says 100 bytes follow, then three.
            let mut bytes = header.clone();
            bytes.extend([section, 100, 0, 1, 2]);
            assert!(!needs_async(&bytes));
        }
    }

    #[test]
    fn the_missing_feature_is_named() {
        let error = "failed to parse WebAssembly module: `error-context` requires the component model \
                     error-context feature (at offset 0xb3)";
        assert_eq!(missing_feature(error).unwrap(), "`error-context` (the component model error-context feature)");
        let error = "failed to parse WebAssembly module: requires the component model async stackful feature";
        assert_eq!(missing_feature(error).unwrap(), "the component model async stackful feature");
        assert_eq!(missing_feature("something else"), None);
    }
}
