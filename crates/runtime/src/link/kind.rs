//! The types a link carries as Rust values rather than `Val`s: the typed paths'
//! parameters and results ([`super::typed`]), and the payloads of the streams and futures it
//! forwards between stores ([`super::streams`]). With each, the Rust type that stands for it
//! (`one!`), for code that is written once and compiled per type.

use wasmtime::component::types::Type;

/// A type a typed path carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    U8,
    U32,
    S32,
    U64,
    S64,
    F32,
    F64,
    Char,
    String,
    ListU8,
    ListU32,
    ListF64,
}

impl Kind {
    pub(crate) fn of(ty: &Type) -> Option<Kind> {
        Some(match ty {
            Type::Bool => Kind::Bool,
            Type::U8 => Kind::U8,
            Type::U32 => Kind::U32,
            Type::S32 => Kind::S32,
            Type::U64 => Kind::U64,
            Type::S64 => Kind::S64,
            Type::Float32 => Kind::F32,
            Type::Float64 => Kind::F64,
            Type::Char => Kind::Char,
            Type::String => Kind::String,
            Type::List(list) => match list.ty() {
                Type::U8 => Kind::ListU8,
                Type::U32 => Kind::ListU32,
                Type::Float64 => Kind::ListF64,
                _ => return None,
            },
            _ => return None,
        })
    }

    pub(crate) fn wit(self) -> &'static str {
        match self {
            Kind::Bool => "bool",
            Kind::U8 => "u8",
            Kind::U32 => "u32",
            Kind::S32 => "s32",
            Kind::U64 => "u64",
            Kind::S64 => "s64",
            Kind::F32 => "f32",
            Kind::F64 => "f64",
            Kind::Char => "char",
            Kind::String => "string",
            Kind::ListU8 => "list<u8>",
            Kind::ListU32 => "list<u32>",
            Kind::ListF64 => "list<f64>",
        }
    }
}

/// Runs `$body` with `$T` the Rust type of `$kind`, one of the kinds listed.
macro_rules! as_type {
    ($kind:expr, $T:ident => $body:expr; $($k:ident => $t:ty),* $(,)?) => {
        match $kind {
            $(Kind::$k => {
                type $T = $t;
                $body
            })*
            #[allow(unreachable_patterns)]
            other => unreachable!("{other:?} is not in the shape's set"),
        }
    };
}

macro_rules! one {
    ($kind:expr, $T:ident => $body:expr) => {
        $crate::link::kind::as_type!($kind, $T => $body; Bool => bool, U8 => u8, U32 => u32, S32 => i32, U64 => u64, S64 => i64,
            F32 => f32, F64 => f64, Char => char, String => String, ListU8 => Vec<u8>, ListU32 => Vec<u32>,
            ListF64 => Vec<f64>)
    };
}

pub(crate) use {as_type, one};
