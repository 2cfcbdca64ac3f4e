//! Arbitrary WIT types and values sent through a real membrane link and back.
//!
//! For a type `T`, two components are written in WAT: a provider exporting
//! `echo: func(x: T, pad: P) -> tuple<T, P>` and a consumer exporting `run` of the same
//! type, which calls `echo` through the link it imports. `P` is sixteen `u64`s, so the
//! canonical ABI passes the arguments in memory and returns the result in memory with
//! the same layout: the provider's core function only returns the pointer it was given,
//! whatever `T` is. A value the host gives `run` crosses into the consumer, out of it
//! through the link, into the provider and all the way back; it must come back equal.

pub mod targets;

use arbitrary::{Result, Unstructured};
use membrane_manifest::AppSpec;
use membrane_runtime::App;
use membrane_runtime::{Audit, CompileCache};
use std::fmt::Write as _;
use wasmtime::component::Val;

/// A WIT value type (resources, futures and streams aside).
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Bool,
    S8,
    U8,
    S16,
    U16,
    S32,
    U32,
    S64,
    U64,
    F32,
    F64,
    Char,
    String,
    List(Box<Ty>),
    Tuple(Vec<Ty>),
    Option(Box<Ty>),
    Result(Option<Box<Ty>>, Option<Box<Ty>>),
    Record(Vec<Ty>),
    Variant(Vec<Option<Ty>>),
    Enum(usize),
    Flags(usize),
}

const PRIMITIVES: [Ty; 13] = [
    Ty::Bool,
    Ty::S8,
    Ty::U8,
    Ty::S16,
    Ty::U16,
    Ty::S32,
    Ty::U32,
    Ty::S64,
    Ty::U64,
    Ty::F32,
    Ty::F64,
    Ty::Char,
    Ty::String,
];

impl Ty {
    /// A type at most `depth` levels deep.
    pub fn arbitrary(u: &mut Unstructured<'_>, depth: u32) -> Result<Ty> {
        let kinds = if depth == 0 { PRIMITIVES.len() } else { PRIMITIVES.len() + 8 };
        let kind = u.choose_index(kinds)?;
        if let Some(primitive) = PRIMITIVES.get(kind) {
            return Ok(primitive.clone());
        }
        let inner = |u: &mut Unstructured<'_>| Ty::arbitrary(u, depth - 1).map(Box::new);
        let some = |u: &mut Unstructured<'_>| -> Result<Vec<Ty>> {
            (0..u.int_in_range(1..=4)?).map(|_| Ty::arbitrary(u, depth - 1)).collect()
        };
        Ok(match kind - PRIMITIVES.len() {
            0 => Ty::List(inner(u)?),
            1 => Ty::Tuple(some(u)?),
            2 => Ty::Option(inner(u)?),
            3 => Ty::Result(
                if u.arbitrary()? { Some(inner(u)?) } else { None },
                if u.arbitrary()? { Some(inner(u)?) } else { None },
            ),
            4 => Ty::Record(some(u)?),
            5 => Ty::Variant(
                (0..u.int_in_range(1..=4)?)
                    .map(|_| if u.arbitrary()? { Ty::arbitrary(u, depth - 1).map(Some) } else { Ok(None) })
                    .collect::<Result<_>>()?,
            ),
            6 => Ty::Enum(u.int_in_range(1..=5)?),
            _ => Ty::Flags(u.int_in_range(1..=32)?),
        })
    }

    /// An arbitrary value of this type.
    pub fn value(&self, u: &mut Unstructured<'_>) -> Result<Val> {
        let boxed = |t: &Ty, u: &mut Unstructured<'_>| t.value(u).map(Box::new);
        Ok(match self {
            Ty::Bool => Val::Bool(u.arbitrary()?),
            Ty::S8 => Val::S8(u.arbitrary()?),
            Ty::U8 => Val::U8(u.arbitrary()?),
            Ty::S16 => Val::S16(u.arbitrary()?),
            Ty::U16 => Val::U16(u.arbitrary()?),
            Ty::S32 => Val::S32(u.arbitrary()?),
            Ty::U32 => Val::U32(u.arbitrary()?),
            Ty::S64 => Val::S64(u.arbitrary()?),
            Ty::U64 => Val::U64(u.arbitrary()?),
            Ty::F32 => Val::Float32(f32::from_bits(u.arbitrary()?)),
            Ty::F64 => Val::Float64(f64::from_bits(u.arbitrary()?)),
            Ty::Char => Val::Char(u.arbitrary()?),
            Ty::String => Val::String(u.arbitrary()?),
            Ty::List(t) => {
                let n = u.arbitrary_len::<u8>()?.min(64);
                Val::List((0..n).map(|_| t.value(u)).collect::<Result<_>>()?)
            }
            Ty::Tuple(ts) => Val::Tuple(ts.iter().map(|t| t.value(u)).collect::<Result<_>>()?),
            Ty::Option(t) => Val::Option(if u.arbitrary()? { Some(boxed(t, u)?) } else { None }),
            Ty::Result(ok, err) => Val::Result(if u.arbitrary()? {
                Ok(ok.as_deref().map(|t| boxed(t, u)).transpose()?)
            } else {
                Err(err.as_deref().map(|t| boxed(t, u)).transpose()?)
            }),
            Ty::Record(ts) => Val::Record(
                ts.iter().enumerate().map(|(i, t)| Ok((format!("f{i}"), t.value(u)?))).collect::<Result<_>>()?,
            ),
            Ty::Variant(cases) => {
                let i = u.choose_index(cases.len())?;
                Val::Variant(format!("c{i}"), cases[i].as_ref().map(|t| boxed(t, u)).transpose()?)
            }
            Ty::Enum(n) => Val::Enum(format!("e{}", u.choose_index(*n)?)),
            Ty::Flags(n) => {
                Val::Flags((0..*n).filter(|_| u.arbitrary().unwrap_or(false)).map(|i| format!("g{i}")).collect())
            }
        })
    }
}

/// Named (nominal) types written so far, for one place in a component: each is defined
/// and then exported, since WIT records, variants, enums and flags must have names.
struct Types {
    text: String,
    next: usize,
    /// In an instance type, `(export "tN" (type $tN (eq $dN)))`; in a component, the
    /// instance built from its exports exports them.
    in_instance_type: bool,
    names: Vec<usize>,
}

impl Types {
    fn new(in_instance_type: bool) -> Types {
        Types { text: String::new(), next: 0, in_instance_type, names: Vec::new() }
    }

    /// A reference to `ty` in WAT, defining whatever names it needs.
    fn reference(&mut self, ty: &Ty) -> String {
        let nominal = match ty {
            Ty::Bool => return "bool".into(),
            Ty::S8 => return "s8".into(),
            Ty::U8 => return "u8".into(),
            Ty::S16 => return "s16".into(),
            Ty::U16 => return "u16".into(),
            Ty::S32 => return "s32".into(),
            Ty::U32 => return "u32".into(),
            Ty::S64 => return "s64".into(),
            Ty::U64 => return "u64".into(),
            Ty::F32 => return "f32".into(),
            Ty::F64 => return "f64".into(),
            Ty::Char => return "char".into(),
            Ty::String => return "string".into(),
            Ty::List(t) => return format!("(list {})", self.reference(t)),
            Ty::Tuple(ts) => {
                let items: Vec<String> = ts.iter().map(|t| self.reference(t)).collect();
                return format!("(tuple {})", items.join(" "));
            }
            Ty::Option(t) => return format!("(option {})", self.reference(t)),
            Ty::Result(ok, err) => {
                let mut text = String::from("(result");
                if let Some(ok) = ok {
                    write!(text, " {}", self.reference(ok)).unwrap();
                }
                if let Some(err) = err {
                    write!(text, " (error {})", self.reference(err)).unwrap();
                }
                return text + ")";
            }
            Ty::Record(ts) => {
                let fields: Vec<String> =
                    ts.iter().enumerate().map(|(i, t)| format!("(field \"f{i}\" {})", self.reference(t))).collect();
                format!("(record {})", fields.join(" "))
            }
            Ty::Variant(cases) => {
                let cases: Vec<String> = cases
                    .iter()
                    .enumerate()
                    .map(|(i, t)| match t {
                        Some(t) => format!("(case \"c{i}\" {})", self.reference(t)),
                        None => format!("(case \"c{i}\")"),
                    })
                    .collect();
                format!("(variant {})", cases.join(" "))
            }
            Ty::Enum(n) => format!("(enum {})", (0..*n).map(|i| format!("\"e{i}\"")).collect::<Vec<_>>().join(" ")),
            Ty::Flags(n) => format!("(flags {})", (0..*n).map(|i| format!("\"g{i}\"")).collect::<Vec<_>>().join(" ")),
        };
        let n = self.next;
        self.next += 1;
        self.names.push(n);
        if self.in_instance_type {
            writeln!(self.text, "(type $d{n} {nominal})").unwrap();
            writeln!(self.text, "(export \"t{n}\" (type $t{n} (eq $d{n})))").unwrap();
        } else {
            writeln!(self.text, "(type $t{n} {nominal})").unwrap();
        }
        format!("$t{n}")
    }
}

/// `(param "x" T) (param "pad" P) (result (tuple T P))` with T's names defined in `types`.
fn signature(ty: &Ty, types: &mut Types) -> String {
    let t = types.reference(ty);
    let pad = format!("(tuple {})", ["u64"; 16].join(" "));
    format!("(param \"x\" {t}) (param \"pad\" {pad}) (result (tuple {t} {pad}))")
}

pub const INTERFACE: &str = "fuzz:echo/echo@0.1.0";
pub const RUN_INTERFACE: &str = "fuzz:echo/run@0.1.0";

/// A bump allocator over one memory, growing it as needed: what `realloc` must be for
/// the canonical ABI to place arguments in this instance.
const ALLOCATOR: &str = r#"
    (memory (export "mem") 1)
    (global $bump (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32) (local $end i32)
      (local.set $at (i32.and (i32.add (global.get $bump) (i32.sub (local.get 2) (i32.const 1)))
                              (i32.sub (i32.const 0) (local.get 2))))
      (local.set $end (i32.add (local.get $at) (local.get 3)))
      (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
        (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536))) (i32.const 16)) (i32.const 1))) (i32.const -1))
          (then unreachable))))
      (global.set $bump (local.get $end))
      (local.get $at))"#;

/// The provider: `echo` hands back the arguments' memory as the result.
pub fn provider_wat(ty: &Ty) -> String {
    let typed = TypedEcho::of(ty);
    let mut types = Types::new(false);
    let sig = signature(ty, &mut types);
    let exports: String = types.names.iter().map(|n| format!("(export \"t{n}\" (type $t{n}))")).collect();
    format!(
        r#"(component
  (core module $m {ALLOCATOR}
    (func (export "echo") (param i32) (result i32) (local.get 0))
    {core_typed})
  (core instance $i (instantiate $m))
  {types}
  (func $echo {sig} (canon lift (core func $i "echo") (memory (core memory $i "mem")) (realloc (core func $i "realloc"))))
  {typed}
  (instance $echo-instance {exports} (export "echo" (func $echo)) {typed_export})
  (export "{INTERFACE}" (instance $echo-instance)))"#,
        types = types.text,
        core_typed = typed.map(|t| t.provider_core()).unwrap_or_default(),
        typed = typed
            .map(|t| format!(r#"(func $echo1 {} (canon lift (core func $i "echo1") (memory (core memory $i "mem")) (realloc (core func $i "realloc"))))"#, t.signature()))
            .unwrap_or_default(),
        typed_export = if typed.is_some() { r#"(export "echo1" (func $echo1))"# } else { "" },
    )
}

/// The consumer: `run` calls the imported `echo` with its own arguments and returns what
/// came back.
pub fn consumer_wat(ty: &Ty) -> String {
    let typed = TypedEcho::of(ty);
    let mut import_types = Types::new(true);
    let import_sig = signature(ty, &mut import_types);
    let mut types = Types::new(false);
    let sig = signature(ty, &mut types);
    let exports: String = types.names.iter().map(|n| format!("(export \"t{n}\" (type $t{n}))")).collect();
    format!(
        r#"(component
  (import "{INTERFACE}" (instance $echo-import
    {import_types}
    (export "echo" (func {import_sig}))
    {typed_import}))
  (core module $memory {ALLOCATOR})
  (core instance $mem (instantiate $memory))
  (core func $echo (canon lower (func $echo-import "echo") (memory (core memory $mem "mem")) (realloc (core func $mem "realloc"))))
  {typed_lower}
  (core module $m
    (import "host" "echo" (func $echo (param i32 i32)))
    (import "host" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    {typed_core}
    (func (export "run") (param i32) (result i32)
      (local $ret i32)
      (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 65536)))
      (call $echo (local.get 0) (local.get $ret))
      (local.get $ret)))
  (alias core export $mem "realloc" (core func $realloc))
  (core instance $i (instantiate $m (with "host" (instance (export "echo" (func $echo)) (export "realloc" (func $realloc)) {typed_with}))))
  {types}
  (func $run {sig} (canon lift (core func $i "run") (memory (core memory $mem "mem")) (realloc (core func $mem "realloc"))))
  {typed_lift}
  (instance $run-instance {exports} (export "run" (func $run)) {typed_export})
  (export "{RUN_INTERFACE}" (instance $run-instance)))"#,
        import_types = import_types.text,
        types = types.text,
        typed_import = typed.map(|t| format!(r#"(export "echo1" (func {}))"#, t.signature())).unwrap_or_default(),
        typed_lower = if typed.is_some() {
            r#"(core func $echo1 (canon lower (func $echo-import "echo1") (memory (core memory $mem "mem")) (realloc (core func $mem "realloc"))))"#
        } else {
            ""
        },
        typed_core = typed.map(|t| t.consumer_core()).unwrap_or_default(),
        typed_with = if typed.is_some() { r#"(export "echo1" (func $echo1))"# } else { "" },
        typed_lift = typed
            .map(|t| format!(r#"(func $run1 {} (canon lift (core func $i "run1") (memory (core memory $mem "mem")) (realloc (core func $mem "realloc"))))"#, t.signature()))
            .unwrap_or_default(),
        typed_export = if typed.is_some() { r#"(export "run1" (func $run1))"# } else { "" },
    )
}

/// For a type a link carries on a typed path as `func(x: T) -> T` (one flat value, or a
/// `string` / `list<u8>` passed as pointer and length and returned through memory), the
/// pieces of `echo1` and `run1`, which echo it as `echo` and `run` do but without the
/// padding that forces the dynamic path.
#[derive(Debug, Clone, Copy)]
pub enum TypedEcho {
    /// One flat value of this core type, and the WIT type.
    Flat(&'static str, &'static str),
    /// Pointer and length, and the WIT type.
    Pair(&'static str),
}

impl TypedEcho {
    pub fn of(ty: &Ty) -> Option<TypedEcho> {
        Some(match ty {
            Ty::Bool => TypedEcho::Flat("i32", "bool"),
            Ty::U32 => TypedEcho::Flat("i32", "u32"),
            Ty::S32 => TypedEcho::Flat("i32", "s32"),
            Ty::U64 => TypedEcho::Flat("i64", "u64"),
            Ty::S64 => TypedEcho::Flat("i64", "s64"),
            Ty::F64 => TypedEcho::Flat("f64", "f64"),
            Ty::String => TypedEcho::Pair("string"),
            Ty::List(t) if **t == Ty::U8 => TypedEcho::Pair("(list u8)"),
            _ => return None,
        })
    }

    fn signature(self) -> String {
        let wit = match self {
            TypedEcho::Flat(_, wit) | TypedEcho::Pair(wit) => wit,
        };
        format!("(param \"x\" {wit}) (result {wit})")
    }

    /// The provider's `echo1`: the value back; for a pair, its pointer and length stored
    /// below the allocator's first address and returned from there.
    fn provider_core(self) -> String {
        match self {
            TypedEcho::Flat(core, _) => {
                format!(r#"(func (export "echo1") (param {core}) (result {core}) (local.get 0))"#)
            }
            TypedEcho::Pair(_) => r#"(func (export "echo1") (param i32 i32) (result i32)
      (i32.store (i32.const 0) (local.get 0)) (i32.store (i32.const 4) (local.get 1)) (i32.const 0))"#
                .into(),
        }
    }

    /// The consumer's `run1` (and its import of the lowered `echo1`).
    fn consumer_core(self) -> String {
        match self {
            TypedEcho::Flat(core, _) => format!(
                r#"(import "host" "echo1" (func $echo1 (param {core}) (result {core})))
    (func (export "run1") (param {core}) (result {core}) (call $echo1 (local.get 0)))"#
            ),
            TypedEcho::Pair(_) => r#"(import "host" "echo1" (func $echo1 (param i32 i32 i32)))
    (func (export "run1") (param i32 i32) (result i32)
      (call $echo1 (local.get 0) (local.get 1) (i32.const 0)) (i32.const 0))"#
                .into(),
        }
    }
}

/// An app of the two components for `ty`, linked through the host.
pub struct EchoApp {
    pub app: App,
    _dir: tempfile::TempDir,
}

/// The isolation levels a link may have; the fuzz targets drive each.
pub const ISOLATIONS: [&str; 2] = ["store", "component"];

impl EchoApp {
    /// The echo app for `ty`, its provider in a store of its own.
    pub fn new(ty: &Ty) -> std::result::Result<EchoApp, String> {
        EchoApp::with_isolation(ty, "store")
    }

    /// The echo app for `ty`, its link at `isolation` (one of [`ISOLATIONS`]).
    pub fn with_isolation(ty: &Ty, isolation: &str) -> std::result::Result<EchoApp, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("provider.wat"), provider_wat(ty)).map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("consumer.wat"), consumer_wat(ty)).map_err(|e| e.to_string())?;
        let manifest = format!(
            r#"[app]
name = "echo"

[component.consumer]
source = "consumer.wat"

[component.provider]
source = "provider.wat"

[[link]]
from = "consumer"
import = "{INTERFACE}"
to = "provider"
isolation = "{isolation}"
"#
        );
        let file = dir.path().join("membrane.toml");
        let spec = AppSpec::parse(&file, &manifest).map_err(|e| e.to_string())?;
        let app = App::load(spec, &CompileCache::disabled(), Audit::default()).map_err(|e| e.to_string())?;
        Ok(EchoApp { app, _dir: dir })
    }

    /// Sends `value` out through the consumer, the link and the provider, and back.
    pub async fn round_trip(&self, value: Val) -> std::result::Result<Val, String> {
        let pad = Val::Tuple((0..16u64).map(Val::U64).collect());
        let results = self
            .app
            .call("consumer", RUN_INTERFACE, "run", &[value, pad.clone()])
            .await
            .map_err(|e| format!("{e:#}"))?;
        match results.as_slice() {
            [Val::Tuple(items)] if items.len() == 2 && items[1] == pad => Ok(items[0].clone()),
            other => Err(format!("unexpected results {other:?}")),
        }
    }

    /// Sends `value` out and back as [`EchoApp::round_trip`] does, through `run1` and
    /// `echo1`, whose link takes a typed path; `None` when the type has none.
    pub async fn round_trip_typed(&self, value: Val) -> Option<std::result::Result<Val, String>> {
        let functions = self.app.link_functions();
        let echo1 = functions[0].iter().find(|f| f.name == "echo1")?;
        if !matches!(echo1.crossing, membrane_runtime::Crossing::Typed { .. }) {
            return Some(Err(format!("echo1 crosses on the {} path", echo1.crossing)));
        }
        let results = self.app.call("consumer", RUN_INTERFACE, "run1", &[value]).await;
        Some(match results {
            Ok(mut results) if results.len() == 1 => Ok(results.remove(0)),
            Ok(other) => Err(format!("unexpected results {other:?}")),
            Err(error) => Err(format!("{error:#}")),
        })
    }
}
