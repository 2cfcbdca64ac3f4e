//! WASI preview 1 command modules: adapted into a component with the official adapter
//! (from wasmtime's own release, so its WASI matches the host's), after which they run
//! behind the same grants and limits as any component. The adapted bytes are what the
//! compile cache keys, so an adapter update gives a new cache entry.

use wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER;
use wasmparser::{Parser, Payload, TypeRef};

const PREVIEW1: &str = "wasi_snapshot_preview1";

/// Whether `module` is a preview 1 command: it exports a `_start` function and imports
/// preview 1 functions and nothing else (anything else has no host to satisfy it).
pub fn is_command(module: &[u8]) -> bool {
    let mut start = false;
    let mut wasi = false;
    for payload in Parser::new(0).parse_all(module) {
        match payload {
            Ok(Payload::ImportSection(imports)) => {
                for import in imports.into_imports() {
                    match import {
                        Ok(import) if import.module == PREVIEW1 && matches!(import.ty, TypeRef::Func(_)) => wasi = true,
                        _ => return false,
                    }
                }
            }
            Ok(Payload::ExportSection(exports)) => {
                for export in exports.into_iter().flatten() {
                    start |= export.name == "_start" && export.kind == wasmparser::ExternalKind::Func;
                }
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    start && wasi
}

/// The module as a component that exports `wasi:cli/run`.
pub fn adapt(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|encoder| encoder.adapter(PREVIEW1, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER))
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| e.context("adapting the WASI preview 1 module into a component failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }

    #[test]
    fn only_a_preview_1_command_is_adapted() {
        let command = module(
            r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                 (memory (export "memory") 1) (func (export "_start")))"#,
        );
        assert!(is_command(&command));
        let component = adapt(&command).unwrap();
        assert!(wasmparser::Parser::is_component(&component));

        let reactor = module(
            r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                 (memory (export "memory") 1) (func (export "_initialize")))"#,
        );
        assert!(!is_command(&reactor), "no _start");
        let foreign =
            module(r#"(module (import "env" "f" (func)) (memory (export "memory") 1) (func (export "_start")))"#);
        assert!(!is_command(&foreign), "an import only the embedder that built it could satisfy");
        assert!(!is_command(&module(r#"(module (func (export "_start")))"#)), "no WASI at all");
    }
}
