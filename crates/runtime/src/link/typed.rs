//! Typed paths across a link. The dynamic path lifts one `Val` per value and per list
//! element; a function whose parameters and results are all of a closed set of types
//! ([`Shape`]) instead crosses as Rust values that wasmtime lifts and lowers in bulk (a
//! `list<u8>` is one copy out of the consumer and one into the provider): a typed host
//! function in the consumer's linker, a `TypedFunc` call into the provider. The path is
//! chosen per function when the app loads.
//!
//! Why a closed set: wasmtime's typed API needs the Rust types at compile time, and each
//! pair of parameter and result types is compiled separately, so the number of shapes is
//! what they cost in build time and binary size. The set covers scalars, `string` and
//! lists of numbers, alone or in pairs of the most common ones; anything else (records,
//! variants, options, resources, longer parameter lists) keeps the dynamic path.

use super::kind::{Kind, as_type, one};
use super::{Arguments, Components, InStore, Link};
use crate::invocation::Invocation;
use crate::sandbox::SandboxState;
use membrane_manifest::Isolation;
use serde::Serialize;
use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use wasmtime::component::types::ComponentFunc;
use wasmtime::component::{Accessor, ComponentNamedList, Func, Lift, LinkerInstance, Lower};
use wasmtime::{AsContextMut, Store, StoreContextMut};

/// Kinds one parameter alone may have.
const ONE: &[Kind] = &[
    Kind::Bool,
    Kind::U8,
    Kind::U32,
    Kind::S32,
    Kind::U64,
    Kind::S64,
    Kind::F32,
    Kind::F64,
    Kind::Char,
    Kind::String,
    Kind::ListU8,
    Kind::ListU32,
    Kind::ListF64,
];
/// Kinds each of two parameters may have.
const PAIR: &[Kind] = &[Kind::U32, Kind::U64, Kind::String, Kind::ListU8];
/// Kinds the result may have (or there is none).
const RESULT: &[Kind] =
    &[Kind::Bool, Kind::U32, Kind::S32, Kind::U64, Kind::S64, Kind::F64, Kind::String, Kind::ListU8];

/// The signature of a function a typed path serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    params: Vec<Kind>,
    result: Option<Kind>,
}

impl Shape {
    /// The shape of `func`, when a typed path serves it.
    pub fn of(func: &ComponentFunc) -> Option<Shape> {
        let params = func.params().map(|(_, ty)| Kind::of(&ty)).collect::<Option<Vec<_>>>()?;
        let mut results = func.results();
        let result = match (results.next(), results.next()) {
            (None, _) => None,
            (Some(ty), None) => Some(Kind::of(&ty).filter(|k| RESULT.contains(k))?),
            (Some(_), Some(_)) => return None,
        };
        let fits = match params.as_slice() {
            [] => true,
            [one] => ONE.contains(one),
            [a, b] => PAIR.contains(a) && PAIR.contains(b),
            _ => false,
        };
        fits.then_some(Shape { params, result })
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: Vec<&str> = self.params.iter().map(|k| k.wit()).collect();
        write!(f, "({})", params.join(", "))?;
        match self.result {
            Some(result) => write!(f, " -> {}", result.wit()),
            None => Ok(()),
        }
    }
}

impl Serialize for Shape {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// How one function of a link crosses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "path", rename_all = "lowercase")]
pub enum Crossing {
    /// Rust values, lifted and lowered in bulk.
    Typed { shape: Shape },
    /// One `Val` per value and per list element: any signature.
    Dynamic,
    /// An async function, or one whose streams and futures the host forwards between
    /// the stores: the consumer's call is concurrent, and so is the provider's.
    Concurrent { carrying: super::streams::Carrying },
}

impl Crossing {
    /// The path for a function of type `consumer` served by exports of types `providers`
    /// (the provider's, and the fallback's if any): typed only when every side has the
    /// same typed shape.
    pub fn choose<'a>(
        consumer: &ComponentFunc,
        providers: impl IntoIterator<Item = &'a ComponentFunc>,
    ) -> Result<Crossing, String> {
        if super::streams::Carrying::needed(consumer) {
            return super::streams::Carrying::of(consumer).map(|carrying| Crossing::Concurrent { carrying });
        }
        Ok(match Shape::of(consumer) {
            Some(shape) if providers.into_iter().all(|p| Shape::of(p).as_ref() == Some(&shape)) => {
                Crossing::Typed { shape }
            }
            _ => Crossing::Dynamic,
        })
    }
}

impl fmt::Display for Crossing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Crossing::Typed { shape } => write!(f, "typed {shape}"),
            Crossing::Dynamic => f.write_str("dynamic"),
            Crossing::Concurrent { carrying } if carrying.is_empty() => f.write_str("concurrent"),
            Crossing::Concurrent { carrying } => write!(f, "concurrent, forwarding {carrying}"),
        }
    }
}

/// A typed call, with its parameter and result types erased so that the link's
/// supervision and the pool are compiled once rather than once per shape.
pub(crate) trait TypedInvocation: InStore + 'static {
    /// Another call with a copy of the arguments, for a later attempt.
    fn copy(&self) -> Box<dyn TypedInvocation>;
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
    /// The call, in a long-lived instance's event loop.
    fn invoke_concurrent<'a>(
        &'a mut self,
        accessor: &'a Accessor<SandboxState>,
        func: Func,
    ) -> Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send + 'a>>;
}

impl Invocation for Box<dyn TypedInvocation> {
    fn invoke<'a>(
        &'a mut self,
        store: &'a mut Store<SandboxState>,
        func: Func,
    ) -> impl Future<Output = wasmtime::Result<()>> + Send + 'a {
        InStore::invoke(&mut **self, store.as_context_mut(), func)
    }

    fn invoke_concurrent<'a>(
        &'a mut self,
        accessor: &'a Accessor<SandboxState>,
        func: Func,
    ) -> impl Future<Output = wasmtime::Result<()>> + Send + 'a {
        TypedInvocation::invoke_concurrent(&mut **self, accessor, func)
    }
}

/// The typed path's arguments: the first call, copied for another attempt only when the
/// link's policy may make one.
pub(crate) struct TypedArgs(pub(crate) Option<Box<dyn TypedInvocation>>);

impl Arguments for TypedArgs {
    type Call = Box<dyn TypedInvocation>;
    fn attempt(&mut self, again: bool) -> Box<dyn TypedInvocation> {
        let call = self.0.as_ref().expect("the arguments are moved only into the last attempt");
        if again { call.copy() } else { self.0.take().expect("checked above") }
    }
}

/// A call with parameters `P` and results `R`.
struct TypedCall<P, R> {
    params: Option<P>,
    results: Option<R>,
}

/// What the Rust types of a shape must be.
trait Params: ComponentNamedList + Lift + Lower + Clone + Send + Sync + 'static {}
impl<P: ComponentNamedList + Lift + Lower + Clone + Send + Sync + 'static> Params for P {}
trait Results: ComponentNamedList + Lift + Lower + Send + Sync + 'static {}
impl<R: ComponentNamedList + Lift + Lower + Send + Sync + 'static> Results for R {}

impl<P: Params, R: Results> InStore for TypedCall<P, R> {
    fn invoke<'a>(
        &'a mut self,
        mut store: StoreContextMut<'a, SandboxState>,
        func: Func,
    ) -> Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            // Checked against the instance's own type on every call (a few comparisons):
            // the export may be the fallback's, and a mismatch is an error, never UB.
            let typed = func.typed::<P, R>(&store)?;
            let params = self.params.take().ok_or_else(|| wasmtime::format_err!("a typed call is made once"))?;
            self.results = Some(typed.call_async(&mut store, params).await?);
            Ok(())
        })
    }
}

impl<P: Params, R: Results> TypedInvocation for TypedCall<P, R> {
    fn invoke_concurrent<'a>(
        &'a mut self,
        accessor: &'a Accessor<SandboxState>,
        func: Func,
    ) -> Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let typed = accessor.with(|store| func.typed::<P, R>(&store))?;
            let params = self.params.take().ok_or_else(|| wasmtime::format_err!("a typed call is made once"))?;
            self.results = Some(typed.call_concurrent(accessor, params).await?);
            Ok(())
        })
    }

    fn copy(&self) -> Box<dyn TypedInvocation> {
        Box::new(TypedCall::<P, R> { params: self.params.clone(), results: None })
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// Something done with the Rust types of a shape.
trait WithTypes {
    type Out;
    fn with<P: Params, R: Results>(self) -> Self::Out;
}

macro_rules! pair {
    ($kind:expr, $T:ident => $body:expr) => {
        as_type!($kind, $T => $body; U32 => u32, U64 => u64, String => String, ListU8 => Vec<u8>)
    };
}

macro_rules! result {
    ($kind:expr, $T:ident => $body:expr) => {
        as_type!($kind, $T => $body; Bool => bool, U32 => u32, S32 => i32, U64 => u64, S64 => i64, F64 => f64,
            String => String, ListU8 => Vec<u8>)
    };
}

fn with_result<P: Params, W: WithTypes>(result: Option<Kind>, w: W) -> W::Out {
    match result {
        None => w.with::<P, ()>(),
        Some(kind) => result!(kind, R => w.with::<P, (R,)>()),
    }
}

/// Does `w` with the Rust types of `shape`.
fn with_types<W: WithTypes>(shape: &Shape, w: W) -> W::Out {
    match shape.params.as_slice() {
        [] => with_result::<(), W>(shape.result, w),
        [a] => one!(*a, A => with_result::<(A,), W>(shape.result, w)),
        [a, b] => pair!(*a, A => pair!(*b, B => with_result::<(A, B), W>(shape.result, w))),
        _ => unreachable!("shapes have at most two parameters"),
    }
}

/// Defines function `func` of `link` in the consumer's `instance` as a typed host
/// function of `shape`.
pub(crate) fn define<A: Components>(
    instance: &mut LinkerInstance<'_, SandboxState>,
    shape: &Shape,
    link: &Arc<Link<A>>,
    func: usize,
) -> wasmtime::Result<()> {
    with_types(shape, Define { instance, link, func })
}

struct Define<'a, 'l, A: Components> {
    instance: &'a mut LinkerInstance<'l, SandboxState>,
    link: &'a Arc<Link<A>>,
    func: usize,
}

impl<A: Components> WithTypes for Define<'_, '_, A> {
    type Out = wasmtime::Result<()>;
    fn with<P: Params, R: Results>(self) -> wasmtime::Result<()> {
        let (link, func) = (self.link.clone(), self.func);
        let name = link.funcs[func].name.clone();
        if link.isolation == Isolation::Component {
            return self.instance.func_wrap_async::<P, R, _>(&name, move |mut store, params: P| {
                let link = link.clone();
                Box::new(async move {
                    let mut call = TypedCall::<P, R> { params: Some(params), results: None };
                    link.call_in_store(&mut store, func, &mut call).await?;
                    call.results.ok_or_else(|| wasmtime::format_err!("a typed call that succeeded has results"))
                })
            });
        }
        self.instance.func_wrap_async::<P, R, _>(&name, move |store, params: P| {
            let link = link.clone();
            let chain = store.data().chain.clone();
            let trace = store.data().trace().cloned();
            Box::new(async move {
                let call = Box::new(TypedCall::<P, R> { params: Some(params), results: None });
                let done = link.forward_typed(chain, trace, func, call).await?;
                let done = done.into_any().downcast::<TypedCall<P, R>>().expect("a call comes back as it went");
                done.results.ok_or_else(|| wasmtime::format_err!("a typed call that succeeded has results"))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names the Rust types of a shape.
    struct Names;
    impl WithTypes for Names {
        type Out = String;
        fn with<P: Params, R: Results>(self) -> String {
            format!("{} -> {}", std::any::type_name::<P>(), std::any::type_name::<R>())
        }
    }

    #[test]
    fn every_shape_in_the_sets_has_rust_types() {
        let results = std::iter::once(None).chain(RESULT.iter().copied().map(Some));
        for result in results {
            let mut shapes = vec![Shape { params: vec![], result }];
            shapes.extend(ONE.iter().map(|k| Shape { params: vec![*k], result }));
            for a in PAIR {
                shapes.extend(PAIR.iter().map(|b| Shape { params: vec![*a, *b], result }));
            }
            for shape in shapes {
                assert!(with_types(&shape, Names).contains("->"), "{shape}");
            }
        }
        let shape = Shape { params: vec![Kind::ListU8, Kind::U32], result: Some(Kind::String) };
        assert_eq!(with_types(&shape, Names), "(alloc::vec::Vec<u8>, u32) -> (alloc::string::String,)");
        assert_eq!(shape.to_string(), "(list<u8>, u32) -> string");
    }
}
