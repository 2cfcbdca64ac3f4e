//! The link round trip for types that once failed or that cover each kind, so the fuzz
//! target's harness itself is known to work.

use membrane_fuzz::{EchoApp, Ty};
use wasmtime::component::Val;

fn round_trip(ty: Ty, value: Val) {
    let app = EchoApp::new(&ty).unwrap_or_else(|e| panic!("{ty:?}: {e}"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let back = runtime.block_on(app.round_trip(value.clone())).unwrap();
    assert_eq!(back, value);
}

#[test]
fn primitives_strings_and_nominal_types_cross_and_come_back() {
    round_trip(Ty::U8, Val::U8(7));
    round_trip(Ty::String, Val::String("membrane ✓".into()));
    round_trip(Ty::F64, Val::Float64(f64::NAN));
    round_trip(Ty::List(Box::new(Ty::Char)), Val::List(vec![Val::Char('a'), Val::Char('🦀')]));
    round_trip(
        Ty::Record(vec![Ty::Enum(3), Ty::Flags(32), Ty::Option(Box::new(Ty::String))]),
        Val::Record(vec![
            ("f0".into(), Val::Enum("e2".into())),
            ("f1".into(), Val::Flags(vec!["g0".into(), "g31".into()])),
            ("f2".into(), Val::Option(Some(Box::new(Val::String("x".into()))))),
        ]),
    );
    round_trip(
        Ty::Variant(vec![None, Some(Ty::List(Box::new(Ty::Record(vec![Ty::U64]))))]),
        Val::Variant("c1".into(), Some(Box::new(Val::List(vec![Val::Record(vec![("f0".into(), Val::U64(1))])])))),
    );
    round_trip(
        Ty::Result(None, Some(Box::new(Ty::Tuple(vec![Ty::S8, Ty::F32])))),
        Val::Result(Err(Some(Box::new(Val::Tuple(vec![Val::S8(-1), Val::Float32(-0.0)]))))),
    );
}

/// Through `run1` and `echo1`, whose link takes the typed path.
fn typed_round_trip(ty: Ty, value: Val) {
    let app = EchoApp::new(&ty).unwrap_or_else(|e| panic!("{ty:?}: {e}"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let back = runtime.block_on(app.round_trip_typed(value.clone())).expect("the type has a typed path");
    assert_eq!(back.unwrap(), value);
}

#[test]
fn the_typed_echo_crosses_on_the_typed_path_and_comes_back() {
    typed_round_trip(Ty::String, Val::String("membrane ✓".into()));
    typed_round_trip(Ty::String, Val::String(String::new()));
    typed_round_trip(Ty::List(Box::new(Ty::U8)), Val::List((0..=255).map(Val::U8).collect()));
    typed_round_trip(Ty::List(Box::new(Ty::U8)), Val::List(vec![]));
    typed_round_trip(Ty::U64, Val::U64(u64::MAX));
    typed_round_trip(Ty::S32, Val::S32(i32::MIN));
    typed_round_trip(Ty::Bool, Val::Bool(true));
    typed_round_trip(Ty::F64, Val::Float64(-0.0));
    // Types without one have no `echo1`.
    let app = EchoApp::new(&Ty::U8).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    assert!(runtime.block_on(app.round_trip_typed(Val::U8(1))).is_none());
}
