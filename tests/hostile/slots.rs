//! Pool slots: a per-call handler whose every instance takes 16 memories, under ~300
//! concurrent requests, beside a neighbour route that must keep its part of the pool.

use crate::served::Served;
use crate::util::{TestApp, guests, membrane};
use std::process::Stdio;
use std::time::{Duration, Instant};
use wasmparser::{ComponentAlias, ComponentExternalKind, ComponentOuterAliasKind, Parser, Payload};

/// `component` with `extra` more core modules of one memory each, instantiated beside it:
/// the same handler, taking `extra` more of the engine's memory slots per instance.
fn with_memories(component: &[u8], extra: u32) -> Vec<u8> {
    // The new module's index: the core modules the top-level component defines before it.
    let (mut depth, mut modules) = (0, 0u32);
    for payload in Parser::new(0).parse_all(component) {
        match payload.unwrap() {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth -= 1,
            Payload::ModuleSection { .. } if depth == 1 => modules += 1,
            Payload::ComponentAliasSection(aliases) if depth == 1 => {
                for alias in aliases {
                    if matches!(
                        alias.unwrap(),
                        ComponentAlias::InstanceExport { kind: ComponentExternalKind::Module, .. }
                            | ComponentAlias::Outer { kind: ComponentOuterAliasKind::CoreModule, .. }
                    ) {
                        modules += 1;
                    }
                }
            }
            _ => {}
        }
    }
    // One memory a module: wasmtime's pool allows one memory per core module.
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend(section(5, &[0x01, 0x00, 0x00])); // one memory, no maximum, 0 pages
    let mut instances = leb(extra);
    for i in 0..extra {
        instances.push(0x00); // instantiate module i, with no arguments
        instances.extend(leb(modules + i));
        instances.extend(leb(0));
    }
    let mut out = component.to_vec();
    for _ in 0..extra {
        out.extend(section(1, &module));
    }
    out.extend(section(2, &instances));
    out
}

fn section(id: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(leb(content.len() as u32));
    out.extend_from_slice(content);
    out
}

fn leb(mut n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// The plugin (http-hello with 15 more memories) at `/plugin`, http-hello everywhere else.
fn plugin_app(app_section: &str) -> TestApp {
    let app = TestApp::new(&format!(
        r#"[app]
name = "slots"
{app_section}

[component.plugin]
source = "plugin.wasm"
limits = {{ timeout = "20s" }}

[component.good]
source = "{{http-hello}}"

[[route]]
path = "/plugin"
component = "plugin"

[[route]]
path = "/"
component = "good"
"#
    ));
    std::fs::write(app.path("plugin.wasm"), with_memories(&std::fs::read(guests::HTTP_HELLO).unwrap(), 15)).unwrap();
    app
}

#[test]
fn a_handler_of_many_memories_under_load_takes_only_its_share_of_the_pool() {
    let app = plugin_app("");
    let server = Served::start(&[app.manifest().to_str().unwrap()]);
    server.assert_neighbour_answers();
    assert_eq!(server.get("/plugin/x").0, 200, "{}", server.stderr());
    // 300 requests that each hold a plugin instance for 3 s: 300 × 16 memories is more
    // than the app's 2,000 memory slots, so undivided they would take every slot.
    let (flood, neighbour) = std::thread::scope(|scope| {
        let flood: Vec<_> = (0..300).map(|_| scope.spawn(|| server.get("/plugin/slow?ms=3000"))).collect();
        std::thread::sleep(Duration::from_millis(1500));
        let neighbour: Vec<u16> = (0..20).map(|i| server.get(&format!("/during{i}")).0).collect();
        (flood.into_iter().map(|t| t.join().unwrap()).collect::<Vec<_>>(), neighbour)
    });
    assert!(neighbour.iter().all(|s| *s == 200), "the neighbour failed during the flood: {neighbour:?}");
    let served = flood.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<_> = flood.iter().filter(|(s, _)| *s != 200).collect();
    assert!(served > 0 && !refused.is_empty(), "{served} served, {} refused", refused.len());
    for (status, body) in refused {
        assert_eq!((*status, body.as_str()), (503, "the component is at its instance limit"));
    }
    server.wait_for_log("component `plugin` has all");
    server.wait_for_log("of its instance slots in use");
    // The flood over, both answer again.
    assert_eq!(server.get("/plugin/after").0, 200);
    server.assert_neighbour_answers();
    crate::assert_no_host_panic(&server.stderr());
}

#[test]
fn an_app_whose_components_cannot_each_have_a_slot_is_refused_at_load() {
    // Eight instance slots are 16 memory slots, half of them the plugin's: less than the
    // 16 one plugin instance takes.
    let app = plugin_app("max_instances = 8");
    let mut serve = membrane()
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off", app.manifest().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A server that starts anyway is stopped, and the test fails below.
    let started = Instant::now();
    while serve.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = serve.kill();
    let out = serve.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("component `plugin` takes 16 memories per instance"), "{stderr}");
    assert!(stderr.contains("raise [app] max_instances to at least 16"), "{stderr}");
}
