//! Component values as the host handles them between stores: which types can hold a
//! handle, and rebuilding a value with each resource in it replaced.

use wasmtime::component::types::Type;
use wasmtime::component::{ResourceAny, Val};

/// Whether a value of type `ty` can hold a handle (a resource, future or stream).
pub fn holds_handles(ty: &Type) -> bool {
    holds(ty, &|t| matches!(t, Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext))
}

/// Whether `ty`, or a type anywhere inside it, is one that `leaf` picks.
pub fn holds(ty: &Type, leaf: &dyn Fn(&Type) -> bool) -> bool {
    if leaf(ty) {
        return true;
    }
    let within = |t: &Type| holds(t, leaf);
    match ty {
        Type::List(list) => within(&list.ty()),
        Type::FixedLengthList(list) => within(&list.ty()),
        Type::Map(map) => within(&map.key()) || within(&map.value()),
        Type::Record(record) => record.fields().any(|field| within(&field.ty)),
        Type::Tuple(tuple) => tuple.types().any(|ty| within(&ty)),
        Type::Variant(variant) => variant.cases().any(|case| case.ty.as_ref().is_some_and(within)),
        Type::Option(option) => within(&option.ty()),
        Type::Result(result) => result.ok().as_ref().is_some_and(within) || result.err().as_ref().is_some_and(within),
        _ => false,
    }
}

/// Rebuilds `value` with every resource in it passed through `f`.
pub(crate) fn map_resources<E>(value: Val, f: &mut dyn FnMut(ResourceAny) -> Result<ResourceAny, E>) -> Result<Val, E> {
    let mut each =
        |values: Vec<Val>| values.into_iter().map(|v| map_resources(v, &mut *f)).collect::<Result<Vec<_>, E>>();
    Ok(match value {
        Val::Resource(resource) => return Ok(Val::Resource(f(resource)?)),
        Val::List(values) => Val::List(each(values)?),
        Val::FixedLengthList(values) => Val::FixedLengthList(each(values)?),
        Val::Tuple(values) => Val::Tuple(each(values)?),
        Val::Record(fields) => Val::Record(
            fields
                .into_iter()
                .map(|(name, v)| map_resources(v, &mut *f).map(|v| (name, v)))
                .collect::<Result<_, E>>()?,
        ),
        Val::Map(pairs) => Val::Map(
            pairs
                .into_iter()
                .map(|(k, v)| Ok((map_resources(k, &mut *f)?, map_resources(v, &mut *f)?)))
                .collect::<Result<_, E>>()?,
        ),
        Val::Variant(case, payload) => Val::Variant(case, map_boxed(payload, f)?),
        Val::Option(payload) => Val::Option(map_boxed(payload, f)?),
        Val::Result(Ok(payload)) => Val::Result(Ok(map_boxed(payload, f)?)),
        Val::Result(Err(payload)) => Val::Result(Err(map_boxed(payload, f)?)),
        other => other,
    })
}

fn map_boxed<E>(
    value: Option<Box<Val>>,
    f: &mut dyn FnMut(ResourceAny) -> Result<ResourceAny, E>,
) -> Result<Option<Box<Val>>, E> {
    value.map(|v| map_resources(*v, f).map(Box::new)).transpose()
}

/// Every resource handle in `values`.
pub(crate) fn resources_in(values: &[Val]) -> Vec<ResourceAny> {
    let mut found = Vec::new();
    for value in values {
        let _ = map_resources::<std::convert::Infallible>(value.clone(), &mut |resource| {
            found.push(resource);
            Ok(resource)
        });
    }
    found
}
