//! Whether a provider's exported interface can serve a consumer's import: the same
//! functions with structurally equal types. Read from each component's own WIT, so a
//! mismatch is reported in WIT on both sides.

use crate::inspect;
use wit_parser::{Handle, InterfaceId, Resolve, Type, TypeDefKind, WorldItem, WorldKey};

/// A component's WIT, decoded once.
pub struct ComponentWit {
    resolve: Resolve,
    world: wit_parser::WorldId,
}

/// One side of a link: an interface in a component's WIT.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    pub resolve: &'a Resolve,
    pub interface: InterfaceId,
}

impl ComponentWit {
    pub fn decode(bytes: &[u8]) -> anyhow::Result<ComponentWit> {
        match wit_component::decode(bytes)? {
            wit_component::DecodedWasm::Component(resolve, world) => Ok(ComponentWit { resolve, world }),
            wit_component::DecodedWasm::WitPackage(..) => {
                anyhow::bail!("a WIT package, not a component")
            }
        }
    }

    fn find(&self, exports: bool, name: &str) -> Option<Side<'_>> {
        let world = &self.resolve.worlds[self.world];
        let items = if exports { &world.exports } else { &world.imports };
        items.iter().find_map(|(key, item)| match (key, item) {
            (WorldKey::Interface(_), WorldItem::Interface { id, .. })
                if self.resolve.id_of(*id).is_some_and(|n| same_interface(&n, name)) =>
            {
                Some(Side { resolve: &self.resolve, interface: *id })
            }
            _ => None,
        })
    }

    pub fn import(&self, name: &str) -> Option<Side<'_>> {
        self.find(false, name)
    }

    pub fn export(&self, name: &str) -> Option<Side<'_>> {
        self.find(true, name)
    }

    /// The exact name under which this component imports or exports `name` (which may
    /// differ from it in the patch version).
    pub fn name_of(&self, side: Side<'_>) -> String {
        side.resolve.id_of(side.interface).unwrap_or_default()
    }
}

/// `a:b/c@1.2.3` and `a:b/c@1.2.4` name the same interface: semver-compatible versions
/// are interchangeable, as in wasmtime's linker.
pub fn same_interface(a: &str, b: &str) -> bool {
    let split = |s: &str| -> (String, String) {
        match s.split_once('@') {
            Some((path, version)) => (path.to_string(), compatible_prefix(version)),
            None => (s.to_string(), String::new()),
        }
    };
    split(a) == split(b)
}

/// The part of a version that must match: the major for 1.x and later, the major and
/// minor for 0.x, everything for 0.0.x.
fn compatible_prefix(version: &str) -> String {
    let parts: Vec<&str> = version.split(['.', '-', '+']).collect();
    match parts.as_slice() {
        ["0", "0", patch, ..] => format!("0.0.{patch}"),
        ["0", minor, ..] => format!("0.{minor}"),
        [major, ..] => major.to_string(),
        [] => String::new(),
    }
}

/// How a provider fails to serve a consumer, with both sides in WIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub function: String,
    pub consumer: String,
    pub provider: Option<String>,
}

/// Checks that every function the consumer imports is exported by the provider with a
/// structurally equal type. Extra provider functions are fine.
pub fn check(consumer: Side<'_>, provider: Side<'_>) -> Result<(), Mismatch> {
    let theirs = &provider.resolve.interfaces[provider.interface].functions;
    for (name, func) in &consumer.resolve.interfaces[consumer.interface].functions {
        let wanted = inspect::signature(consumer.resolve, func);
        let Some(offered) = theirs.get(name) else {
            return Err(Mismatch { function: name.clone(), consumer: wanted, provider: None });
        };
        // An async function and a synchronous one differ in type: the caller of one
        // lowers its call for the other's ABI.
        let same = is_async(&func.kind) == is_async(&offered.kind)
            && func.params.len() == offered.params.len()
            && func
                .params
                .iter()
                .zip(&offered.params)
                .all(|(a, b)| a.name == b.name && same_type(consumer.resolve, &a.ty, provider.resolve, &b.ty))
            && match (&func.result, &offered.result) {
                (None, None) => true,
                (Some(a), Some(b)) => same_type(consumer.resolve, a, provider.resolve, b),
                _ => false,
            };
        if !same {
            return Err(Mismatch {
                function: name.clone(),
                consumer: wanted,
                provider: Some(inspect::signature(provider.resolve, offered)),
            });
        }
    }
    Ok(())
}

fn is_async(kind: &wit_parser::FunctionKind) -> bool {
    use wit_parser::FunctionKind::*;
    matches!(kind, AsyncFreestanding | AsyncMethod(_) | AsyncStatic(_))
}

/// Whether the interface declares resource types (which need a long-lived provider).
pub fn has_resources(side: Side<'_>) -> bool {
    side.resolve.interfaces[side.interface]
        .types
        .values()
        .any(|id| matches!(side.resolve.types[*id].kind, TypeDefKind::Resource))
}

fn same_type(ra: &Resolve, a: &Type, rb: &Resolve, b: &Type) -> bool {
    match (a, b) {
        (Type::Id(ia), Type::Id(ib)) => same_def(ra, *ia, rb, *ib),
        (Type::Id(ia), _) => match &ra.types[*ia].kind {
            TypeDefKind::Type(inner) => same_type(ra, inner, rb, b),
            _ => false,
        },
        (_, Type::Id(ib)) => match &rb.types[*ib].kind {
            TypeDefKind::Type(inner) => same_type(ra, a, rb, inner),
            _ => false,
        },
        (a, b) => a == b,
    }
}

fn same_def(ra: &Resolve, a: wit_parser::TypeId, rb: &Resolve, b: wit_parser::TypeId) -> bool {
    let (da, db) = (&ra.types[a], &rb.types[b]);
    let t = |x: &Type, y: &Type| same_type(ra, x, rb, y);
    let opt = |x: &Option<Type>, y: &Option<Type>| match (x, y) {
        (None, None) => true,
        (Some(x), Some(y)) => t(x, y),
        _ => false,
    };
    match (&da.kind, &db.kind) {
        (TypeDefKind::Type(x), _) => same_type(ra, x, rb, &Type::Id(b)),
        (_, TypeDefKind::Type(y)) => same_type(ra, &Type::Id(a), rb, y),
        (TypeDefKind::Record(x), TypeDefKind::Record(y)) => {
            x.fields.len() == y.fields.len()
                && x.fields.iter().zip(&y.fields).all(|(f, g)| f.name == g.name && t(&f.ty, &g.ty))
        }
        (TypeDefKind::Variant(x), TypeDefKind::Variant(y)) => {
            x.cases.len() == y.cases.len()
                && x.cases.iter().zip(&y.cases).all(|(c, d)| c.name == d.name && opt(&c.ty, &d.ty))
        }
        (TypeDefKind::Enum(x), TypeDefKind::Enum(y)) => {
            x.cases.iter().map(|c| &c.name).eq(y.cases.iter().map(|c| &c.name))
        }
        (TypeDefKind::Flags(x), TypeDefKind::Flags(y)) => {
            x.flags.iter().map(|f| &f.name).eq(y.flags.iter().map(|f| &f.name))
        }
        (TypeDefKind::Tuple(x), TypeDefKind::Tuple(y)) => {
            x.types.len() == y.types.len() && x.types.iter().zip(&y.types).all(|(p, q)| t(p, q))
        }
        (TypeDefKind::Option(x), TypeDefKind::Option(y)) => t(x, y),
        (TypeDefKind::Result(x), TypeDefKind::Result(y)) => opt(&x.ok, &y.ok) && opt(&x.err, &y.err),
        (TypeDefKind::List(x), TypeDefKind::List(y)) => t(x, y),
        (TypeDefKind::FixedLengthList(x, n), TypeDefKind::FixedLengthList(y, m)) => n == m && t(x, y),
        (TypeDefKind::Map(k1, v1), TypeDefKind::Map(k2, v2)) => t(k1, k2) && t(v1, v2),
        (TypeDefKind::Future(x), TypeDefKind::Future(y)) | (TypeDefKind::Stream(x), TypeDefKind::Stream(y)) => {
            opt(x, y)
        }
        (TypeDefKind::Resource, TypeDefKind::Resource) => da.name == db.name,
        (TypeDefKind::Handle(x), TypeDefKind::Handle(y)) => match (x, y) {
            (Handle::Own(p), Handle::Own(q)) | (Handle::Borrow(p), Handle::Borrow(q)) => same_def(ra, *p, rb, *q),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_compatible_names_are_the_same_interface() {
        assert!(same_interface("wasi:cli/run@0.2.0", "wasi:cli/run@0.2.6"));
        assert!(!same_interface("wasi:cli/run@0.2.0", "wasi:cli/run@0.3.0"));
        assert!(same_interface("a:b/c@1.0.0", "a:b/c@1.4.2"));
        assert!(!same_interface("a:b/c@0.0.1", "a:b/c@0.0.2"));
        assert!(!same_interface("a:b/c@0.1.0", "a:b/d@0.1.0"));
    }
}
