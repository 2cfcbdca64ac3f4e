//! Sizes (`64MiB`) and durations (`50ms`) as written in flags and manifests.

use std::fmt;
use std::str::FromStr;

/// A parse error for a size or a duration, naming the text and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("invalid size {text:?}: expected a number with a unit, e.g. 64MiB, 512KiB, 1GiB or 4096B")]
    Size { text: String },
    #[error("invalid duration {text:?}: expected a number with a unit, e.g. 50ms, 2s, 1m or 1h")]
    Duration { text: String },
}

/// A number of bytes. Binary units (KiB, MiB, GiB) are powers of 1024, decimal units
/// (KB, MB, GB) powers of 1000, as their names say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn kib(n: u64) -> Self {
        Self(n << 10)
    }
    pub const fn mib(n: u64) -> Self {
        Self(n << 20)
    }
    pub const fn gib(n: u64) -> Self {
        Self(n << 30)
    }
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, UnitError> {
        let err = || UnitError::Size { text: text.to_string() };
        let (number, unit) = split_number(text.trim()).ok_or_else(err)?;
        let scale: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => return Err(err()),
        };
        number.checked_mul(scale).map(ByteSize).ok_or_else(err)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if n >= 1 << shift && n.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}B")
    }
}

/// A span of time. Wraps `std::time::Duration` to parse and print our units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }
    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }
    pub fn std(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, UnitError> {
        let err = || UnitError::Duration { text: text.to_string() };
        let (number, unit) = split_number(text.trim()).ok_or_else(err)?;
        let d = match unit {
            "ns" => std::time::Duration::from_nanos(number),
            "us" | "µs" => std::time::Duration::from_micros(number),
            "ms" => std::time::Duration::from_millis(number),
            "s" => std::time::Duration::from_secs(number),
            "m" | "min" => std::time::Duration::from_secs(number.checked_mul(60).ok_or_else(err)?),
            "h" => std::time::Duration::from_secs(number.checked_mul(3600).ok_or_else(err)?),
            _ => return Err(err()),
        };
        Ok(Duration(d))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 && d.as_secs() > 0 {
            let s = d.as_secs();
            if s.is_multiple_of(3600) {
                write!(f, "{}h", s / 3600)
            } else if s.is_multiple_of(60) {
                write!(f, "{}m", s / 60)
            } else {
                write!(f, "{s}s")
            }
        } else if d.subsec_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}ms", d.as_millis())
        } else if d.subsec_nanos().is_multiple_of(1_000) {
            write!(f, "{}us", d.as_micros())
        } else {
            write!(f, "{}ns", d.as_nanos())
        }
    }
}

/// Splits `"64MiB"` into `(64, "MiB")`; underscores in the number are allowed.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let end = text.find(|c: char| !c.is_ascii_digit() && c != '_').unwrap_or(text.len());
    let digits: String = text[..end].chars().filter(|c| *c != '_').collect();
    if digits.is_empty() {
        return None;
    }
    Some((digits.parse().ok()?, text[end..].trim()))
}

serde_via_str!(ByteSize, Duration);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!("64MiB".parse(), Ok(ByteSize::mib(64)));
        assert_eq!("512 KiB".parse(), Ok(ByteSize::kib(512)));
        assert_eq!("1GiB".parse(), Ok(ByteSize::gib(1)));
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
        assert_eq!("2MB".parse(), Ok(ByteSize(2_000_000)));
        assert_eq!("1_024B".parse(), Ok(ByteSize(1024)));
        assert!("64 parsecs".parse::<ByteSize>().is_err());
        assert!("MiB".parse::<ByteSize>().is_err());
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn sizes_print_in_the_largest_exact_unit() {
        assert_eq!(ByteSize::mib(64).to_string(), "64MiB");
        assert_eq!(ByteSize(1536).to_string(), "1536B");
        assert_eq!(ByteSize::kib(1536).to_string(), "1536KiB");
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!("50ms".parse(), Ok(Duration::from_millis(50)));
        assert_eq!("2s".parse(), Ok(Duration::from_secs(2)));
        assert_eq!("1m".parse(), Ok(Duration::from_secs(60)));
        assert_eq!("250us".parse::<Duration>().unwrap().to_string(), "250us");
        assert_eq!(Duration::from_secs(90).to_string(), "90s");
        assert_eq!(Duration::from_secs(3600).to_string(), "1h");
        let err = "2 fortnights".parse::<Duration>().unwrap_err();
        assert!(err.to_string().contains("e.g. 50ms"), "{err}");
    }
}
