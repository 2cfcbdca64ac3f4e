//! The text forms of the manifest's values (instance modes, trap policies, isolation levels, digests,
//! trusted keys): each parses with an [`InvalidValue`] that says what the key expects, and
//! prints back as written.

use crate::app::{Digest, InstanceMode, Isolation, OnTrap, TrustedKey};
use std::fmt;
use std::str::FromStr;

/// A value of a manifest key that does not parse, with what the key expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: expected {expected}")]
pub struct InvalidValue {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl FromStr for InstanceMode {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "per-call" => Ok(InstanceMode::PerCall),
            "singleton" => Ok(InstanceMode::Singleton),
            _ => s.strip_prefix("pool:").and_then(|n| n.parse().ok()).map(InstanceMode::Pool).ok_or_else(|| {
                InvalidValue {
                    what: "instances",
                    value: s.to_string(),
                    expected: "\"per-call\", \"singleton\" or \"pool:N\"",
                }
            }),
        }
    }
}

impl InstanceMode {
    /// The mode as written in a manifest, without an allocation but for `pool:N`.
    pub fn label(&self) -> std::borrow::Cow<'static, str> {
        match self {
            InstanceMode::PerCall => "per-call".into(),
            InstanceMode::Singleton => "singleton".into(),
            InstanceMode::Pool(n) => format!("pool:{n}").into(),
        }
    }
}

impl fmt::Display for InstanceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl FromStr for OnTrap {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let err = || InvalidValue {
            what: "on_trap",
            value: s.to_string(),
            expected: "\"propagate\", \"retry:N\" or \"fallback:<component>\"",
        };
        if s == "propagate" {
            Ok(OnTrap::Propagate)
        } else if let Some(n) = s.strip_prefix("retry:") {
            n.parse().map(OnTrap::Retry).map_err(|_| err())
        } else if let Some(c) = s.strip_prefix("fallback:") {
            if c.is_empty() { Err(err()) } else { Ok(OnTrap::Fallback(c.to_string())) }
        } else {
            Err(err())
        }
    }
}

impl fmt::Display for OnTrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OnTrap::Propagate => f.write_str("propagate"),
            OnTrap::Retry(n) => write!(f, "retry:{n}"),
            OnTrap::Fallback(c) => write!(f, "fallback:{c}"),
        }
    }
}

impl FromStr for Isolation {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "store" => Ok(Isolation::Store),
            "component" => Ok(Isolation::Component),
            _ => Err(InvalidValue { what: "isolation", value: s.to_string(), expected: "\"store\" or \"component\"" }),
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Isolation::Store => "store",
            Isolation::Component => "component",
        })
    }
}

impl FromStr for Digest {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let err =
            || InvalidValue { what: "digest", value: s.to_string(), expected: "sha256: followed by 64 hex digits" };
        let hex = s.strip_prefix("sha256:").ok_or_else(err)?;
        if hex.len() != 64 {
            return Err(err());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| err())?;
        }
        Ok(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl FromStr for TrustedKey {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        use base64::Engine as _;
        let decoded = s.strip_prefix("ed25519:").and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
        match decoded {
            Some(bytes) if bytes.len() == 32 => Ok(TrustedKey(s.to_string())),
            _ => Err(InvalidValue {
                what: "trusted key",
                value: s.to_string(),
                expected: "ed25519: followed by the base64 of 32 bytes, as `membrane keygen` prints it",
            }),
        }
    }
}

impl fmt::Display for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

serde_via_str!(InstanceMode, Isolation, OnTrap, Digest, TrustedKey);
