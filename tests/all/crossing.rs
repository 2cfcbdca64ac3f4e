//! Typed paths across a link: each shape carries its values exactly as the dynamic path
//! does (edges included), a trap on a typed path is contained as on the dynamic one, and
//! `check` and the app say which path each function takes.

use crate::util::{TestApp, caller_app, with_guests};
use membrane_manifest::AppSpec;
use membrane_runtime::App;
use membrane_runtime::Crossing;
use membrane_runtime::{Audit, CompileCache};
use wasmtime::component::Val;

pub const SHAPES: &str = "membrane:test/shapes@0.1.0";
pub const DRIVER: &str = "membrane:test/shapes-driver@0.1.0";

/// The shapes consumer linked to the shapes provider (a singleton), loaded in-process.
fn shapes_app() -> (tempfile::TempDir, App) {
    shapes_app_with("singleton", "store")
}

/// The shapes consumer linked to the shapes provider of `instances`, with `isolation`.
pub fn shapes_app_with(instances: &str, isolation: &str) -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "[app]\nname = \"shapes\"\n\n[component.consumer]\nsource = \"{{shapes-consumer}}\"\n\n\
         [component.provider]\nsource = \"{{shapes-provider}}\"\ninstances = \"{instances}\"\n\n\
         [[link]]\nfrom = \"consumer\"\nimport = \"{SHAPES}\"\nto = \"provider\"\nisolation = \"{isolation}\"\n"
    );
    let path = dir.path().join("membrane.toml");
    std::fs::write(&path, with_guests(&manifest)).unwrap();
    let spec = AppSpec::load(&path).unwrap();
    let app = App::load(spec, &CompileCache::disabled(), Audit::default()).unwrap();
    (dir, app)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn bytes(data: &[u8]) -> Val {
    Val::List(data.iter().map(|b| Val::U8(*b)).collect())
}

/// Each function of `shapes` with arguments at the edges of their types, and the answer.
pub fn cases() -> Vec<(&'static str, Vec<Val>, Vec<Val>)> {
    let big_text = "ü😀 ".repeat(100_000);
    let big_bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7) as u8).collect();
    let same = |f: &'static str, v: Val| (f, vec![v.clone()], vec![v]);
    let mut cases = vec![
        ("nothing", vec![], vec![]),
        same("flag", Val::Bool(true)),
        same("flag", Val::Bool(false)),
        ("byte", vec![Val::U8(255)], vec![Val::U32(255)]),
        ("byte", vec![Val::U8(0)], vec![Val::U32(0)]),
        ("single", vec![Val::Float32(f32::MIN_POSITIVE)], vec![Val::Float64(f32::MIN_POSITIVE.into())]),
        ("single", vec![Val::Float32(f32::NEG_INFINITY)], vec![Val::Float64(f64::NEG_INFINITY)]),
        ("letter", vec![Val::Char('\u{10FFFF}')], vec![Val::U32(0x10FFFF)]),
        ("letter", vec![Val::Char('é')], vec![Val::U32(0xE9)]),
        same("text", Val::String(String::new())),
        same("text", Val::String("héllo wörld ✓ 😀".into())),
        same("text", Val::String(big_text.clone())),
        same("bytes", bytes(&[])),
        same("bytes", bytes(&(0..=255).collect::<Vec<u8>>())),
        same("bytes", bytes(&big_bytes)),
        ("words", vec![Val::List(vec![])], vec![Val::String(String::new())]),
        (
            "words",
            vec![Val::List(vec![Val::U32(0), Val::U32(u32::MAX), Val::U32(1)])],
            vec![Val::String("0,ffffffff,1".into())],
        ),
        (
            "doubles",
            vec![Val::List(vec![Val::Float64(0.5), Val::Float64(-0.0), Val::Float64(f64::MAX)])],
            vec![Val::String(format!("{:x},{:x},{:x}", 0.5f64.to_bits(), (-0.0f64).to_bits(), f64::MAX.to_bits()))],
        ),
        ("join", vec![Val::String("ä".into()), Val::String("😀".into())], vec![Val::String("ä😀".into())]),
        ("join", vec![Val::String(String::new()), Val::String(String::new())], vec![Val::String(String::new())]),
        ("append", vec![bytes(&[]), bytes(&[])], vec![bytes(&[])]),
        ("append", vec![bytes(&[1, 2]), bytes(&[255])], vec![bytes(&[1, 2, 255])]),
        ("mix", vec![Val::U64(u64::MAX), bytes(&[1, 2])], vec![Val::U64(1)]),
        ("mix", vec![Val::U64(0), bytes(&big_bytes)], vec![Val::U64(1_000_000)]),
        same("trap-on-zero", Val::U32(u32::MAX)),
        same("row", Val::Tuple(vec![Val::U32(7), Val::String("ß".into())])),
    ];
    for v in [i32::MIN, -1, 0, i32::MAX] {
        cases.push(same("signed", Val::S32(v)));
    }
    for v in [0, 1, u32::MAX] {
        cases.push(same("word", Val::U32(v)));
    }
    for v in [0, u64::MAX] {
        cases.push(same("long", Val::U64(v)));
    }
    for v in [i64::MIN, -1, i64::MAX] {
        cases.push(same("signed-long", Val::S64(v)));
    }
    for v in [f64::MAX, f64::MIN_POSITIVE, -0.0, f64::INFINITY] {
        cases.push(same("double", Val::Float64(v)));
    }
    cases
}

#[test]
fn each_typed_shape_carries_values_as_the_dynamic_path_does() {
    let (_dir, app) = shapes_app();
    let functions = &app.link_functions()[0];
    let path = |name: &str| functions.iter().find(|f| f.name == name).unwrap().crossing.to_string();
    assert_eq!(path("bytes"), "typed (list<u8>) -> list<u8>");
    assert_eq!(path("mix"), "typed (u64, list<u8>) -> u64");
    assert_eq!(path("nothing"), "typed ()");
    assert_eq!(path("row"), "dynamic");
    let typed = functions.iter().filter(|f| matches!(f.crossing, Crossing::Typed { .. })).count();
    assert_eq!(typed, functions.len() - 1, "{functions:#?}");

    let runtime = runtime();
    for (function, params, expected) in cases() {
        let shown = format!("{function}({:.80})", format!("{params:?}"));
        // Through the consumer, whose import the link serves on the function's path.
        let through = runtime.block_on(app.call("consumer", DRIVER, function, &params));
        assert!(through.as_ref().is_ok_and(|r| *r == expected), "{shown}: {through:.200?}");
        // The same call on the dynamic path, as the link serves a host call.
        let dynamic = runtime.block_on(app.call_link("consumer", SHAPES, function, &params));
        assert!(dynamic.as_ref().is_ok_and(|r| *r == expected), "{shown} (dynamic): {dynamic:.200?}");
    }
}

/// Makes the provider trap through the consumer; the error names the link, the function
/// and the trap, and is given back for more checks.
pub fn trap_on_zero(runtime: &tokio::runtime::Runtime, app: &App) -> String {
    let error = runtime.block_on(app.call("consumer", DRIVER, "trap-on-zero", &[Val::U32(0)])).unwrap_err();
    let error = format!("{error:?}");
    assert!(
        error.contains("its call to `provider` through membrane:test/shapes@0.1.0 (trap-on-zero) failed"),
        "{error}"
    );
    assert!(error.contains("component `provider` stopped: wasm `unreachable` executed"), "{error}");
    error
}

#[test]
fn a_trap_on_a_typed_path_is_contained_and_the_provider_serves_again() {
    let (_dir, app) = shapes_app();
    let runtime = runtime();
    let error = trap_on_zero(&runtime, &app);
    assert!(error.contains("membrane:test/shapes@0.1.0#trap-on-zero"), "the guest backtrace: {error}");
    let stats = app.stats();
    let link = &stats.links[0].stats;
    assert_eq!((link.calls, link.traps, link.errors), (1, 1, 1), "{link:?}");
    // The provider's next instance answers; the consumer's store took the error, not the host.
    let answer = runtime.block_on(app.call("consumer", DRIVER, "word", &[Val::U32(9)])).unwrap();
    assert_eq!(answer, [Val::U32(9)]);
    assert_eq!(app.stats().components["provider"].restarts, 1);
}

#[test]
fn check_names_the_path_of_each_linked_function() {
    // The faults, counter and memory links that the policy, timeout and hostile tests use
    // take typed paths, so those tests hold on them.
    let app = TestApp::new(&caller_app("instances = \"singleton\"", ""));
    let out = app.check(&[]);
    out.assert_code(0)
        .assert_stdout_has("      increment: typed () -> u64\n")
        .assert_stdout_has("      maybe-trap: typed (bool) -> string\n")
        .assert_stdout_has("      flaky: typed (u32) -> string\n")
        .assert_stdout_has("      spin: typed ()\n")
        .assert_stdout_has("      peek: typed (u32, u32) -> list<u8>\n")
        .assert_stdout_has("      reverse: typed (list<u8>) -> list<u8>\n");
    let kv = TestApp::new(&crate::util::manifest(
        "client",
        &[("client", "source = \"{kv-client}\""), ("store", "source = \"{provider}\"\ninstances = \"singleton\"")],
        &[("client", "membrane:test/kv@0.1.0", "store", "")],
    ));
    kv.check(&[])
        .assert_code(0)
        .assert_stdout_has("      merge: dynamic\n")
        .assert_stdout_has("      live: typed () -> u32\n");
}
