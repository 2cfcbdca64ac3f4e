//! Component values as the host handles them between stores: which types can hold a
//! handle, and rebuilding a value with each resource in it replaced.

use wasmtime::component::types::Type;
use wasmtime::component::{ResourceAny, Val};

/// Whether a value of type `ty` can hold a handle (a resource, future or stream).
pub fn holds_handles(ty: &Type) -> bool {
    match ty {
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => true,
        Type::List(list) => holds_handles(&list.ty()),
        Type::FixedLengthList(list) => holds_handles(&list.ty()),
        Type::Map(map) => holds_handles(&map.key()) || holds_handles(&map.value()),
        Type::Record(record) => record.fields().any(|field| holds_handles(&field.ty)),
        Type::Tuple(tuple) => tuple.types().any(|ty| holds_handles(&ty)),
        Type::Variant(variant) => variant.cases().any(|case| case.ty.as_ref().is_some_and(holds_handles)),
        Type::Option(option) => holds_handles(&option.ty()),
        Type::Result(result) => {
            result.ok().as_ref().is_some_and(holds_handles) || result.err().as_ref().is_some_and(holds_handles)
        }
        Type::Bool
        | Type::S8
        | Type::U8
        | Type::S16
        | Type::U16
        | Type::S32
        | Type::U32
        | Type::S64
        | Type::U64
        | Type::Float32
        | Type::Float64
        | Type::Char
        | Type::String
        | Type::Enum(_)
        | Type::Flags(_) => false,
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
