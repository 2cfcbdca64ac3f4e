//! What a component imports and exports, in WIT terms, and which capability each import
//! would draw on. Read from the component's embedded types with `wit-component`.

use crate::capability::{self, Capability};
use crate::file::ComponentFile;
use serde::Serialize;
use std::fmt::{self, Write};
use wit_parser::{Function, FunctionKind, Handle, Resolve, Type, TypeDefKind, TypeId, WorldItem, WorldKey};

/// The report `membrane inspect` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub name: String,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub imports: Vec<Item>,
    pub exports: Vec<Item>,
}

/// One imported or exported interface (or a bare function).
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub name: String,
    /// Function signatures in WIT syntax, `name: func(...) -> ...`.
    pub functions: Vec<String>,
    /// For imports: what would satisfy it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<Capability>,
}

/// Reads the component's WIT world.
pub fn inspect(file: &ComponentFile) -> anyhow::Result<Inspection> {
    let decoded = wit_component::decode(&file.bytes)?;
    let resolve = decoded.resolve();
    let world = &resolve.worlds[decoded.package_world(resolve)?];
    let items = |map: &wit_parser::IndexMap<WorldKey, WorldItem>, imports: bool| -> Vec<Item> {
        map.iter()
            .filter_map(|(key, item)| {
                let (name, functions) = match item {
                    WorldItem::Interface { id, .. } => {
                        let name = resolve.id_of(*id).unwrap_or_else(|| resolve.name_world_key(key));
                        let funcs = resolve.interfaces[*id].functions.values();
                        (name, funcs.map(|f| signature(resolve, f)).collect())
                    }
                    WorldItem::Function(f) => (f.name.clone(), vec![signature(resolve, f)]),
                    // Types in a world are not something to link; they are shown through
                    // the functions that use them.
                    WorldItem::Type { .. } => return None,
                };
                let capability = imports.then(|| capability::of_import(&name));
                Some(Item { name, functions, capability })
            })
            .collect()
    };
    Ok(Inspection {
        name: file.name.clone(),
        path: file.path.display().to_string(),
        size: file.bytes.len() as u64,
        sha256: hex::encode(file.source_sha256),
        imports: items(&world.imports, true),
        exports: items(&world.exports, false),
    })
}

/// A component's world as its decoder finds it: the root package's only world.
trait PackageWorld {
    fn package_world(&self, resolve: &Resolve) -> anyhow::Result<wit_parser::WorldId>;
}

impl PackageWorld for wit_component::DecodedWasm {
    fn package_world(&self, _resolve: &Resolve) -> anyhow::Result<wit_parser::WorldId> {
        match self {
            wit_component::DecodedWasm::Component(_, world) => Ok(*world),
            wit_component::DecodedWasm::WitPackage(..) => {
                anyhow::bail!("this is a WIT package, not a runnable component")
            }
        }
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "component {} ({})", self.name, self.path)?;
        writeln!(f, "  size    {} bytes", self.size)?;
        writeln!(f, "  sha256  {}", self.sha256)?;
        for (title, items) in [("imports", &self.imports), ("exports", &self.exports)] {
            writeln!(f, "\n{title}:")?;
            if items.is_empty() {
                writeln!(f, "  (none)")?;
            }
            let width = items.iter().map(|i| i.name.len()).max().unwrap_or(0);
            for item in items {
                match &item.capability {
                    Some(cap) => writeln!(f, "  {:width$}  -> {}", item.name, cap.describe())?,
                    None => writeln!(f, "  {}", item.name)?,
                }
                for function in &item.functions {
                    writeln!(f, "      {function}")?;
                }
            }
        }
        Ok(())
    }
}

pub fn signature(resolve: &Resolve, func: &Function) -> String {
    let resource = |id: &TypeId| resolve.types[*id].name.clone().unwrap_or_default();
    let (name, is_async) = match &func.kind {
        FunctionKind::Freestanding => (func.name.clone(), false),
        FunctionKind::AsyncFreestanding => (func.name.clone(), true),
        FunctionKind::Method(id) | FunctionKind::Static(id) => {
            (format!("{}.{}", resource(id), func.item_name()), false)
        }
        FunctionKind::AsyncMethod(id) | FunctionKind::AsyncStatic(id) => {
            (format!("{}.{}", resource(id), func.item_name()), true)
        }
        FunctionKind::Constructor(id) => (format!("{}.constructor", resource(id)), false),
    };
    let mut out = format!("{name}: {}func(", if is_async { "async " } else { "" });
    for (i, param) in func.params.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}: {}", param.name, type_name(resolve, &param.ty));
    }
    out.push(')');
    if let Some(result) = &func.result {
        let _ = write!(out, " -> {}", type_name(resolve, result));
    }
    out
}

/// A type as WIT spells it; named types by their name.
fn type_name(resolve: &Resolve, ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::U8 => "u8".into(),
        Type::U16 => "u16".into(),
        Type::U32 => "u32".into(),
        Type::U64 => "u64".into(),
        Type::S8 => "s8".into(),
        Type::S16 => "s16".into(),
        Type::S32 => "s32".into(),
        Type::S64 => "s64".into(),
        Type::F32 => "f32".into(),
        Type::F64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::ErrorContext => "error-context".into(),
        Type::Id(id) => typedef_name(resolve, *id),
    }
}

fn typedef_name(resolve: &Resolve, id: TypeId) -> String {
    let def = &resolve.types[id];
    if let Some(name) = &def.name {
        return name.clone();
    }
    let t = |ty: &Type| type_name(resolve, ty);
    let opt = |ty: &Option<Type>| ty.as_ref().map_or("_".to_string(), t);
    match &def.kind {
        TypeDefKind::Option(ty) => format!("option<{}>", t(ty)),
        TypeDefKind::Result(r) => match (&r.ok, &r.err) {
            (None, None) => "result".into(),
            (ok, None) => format!("result<{}>", opt(ok)),
            (ok, err) => format!("result<{}, {}>", opt(ok), opt(err)),
        },
        TypeDefKind::List(ty) => format!("list<{}>", t(ty)),
        TypeDefKind::FixedLengthList(ty, n) => format!("list<{}, {n}>", t(ty)),
        TypeDefKind::Map(k, v) => format!("map<{}, {}>", t(k), t(v)),
        TypeDefKind::Tuple(tuple) => {
            format!("tuple<{}>", tuple.types.iter().map(t).collect::<Vec<_>>().join(", "))
        }
        TypeDefKind::Handle(Handle::Own(res)) => typedef_name(resolve, *res),
        TypeDefKind::Handle(Handle::Borrow(res)) => {
            format!("borrow<{}>", typedef_name(resolve, *res))
        }
        TypeDefKind::Future(ty) => ty.as_ref().map_or("future".into(), |ty| format!("future<{}>", t(ty))),
        TypeDefKind::Stream(ty) => ty.as_ref().map_or("stream".into(), |ty| format!("stream<{}>", t(ty))),
        TypeDefKind::Type(ty) => t(ty),
        _ => "<anonymous type>".into(),
    }
}
