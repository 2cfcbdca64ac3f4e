//! `oci://REGISTRY/REPOSITORY:TAG` and `oci://REGISTRY/REPOSITORY@sha256:DIGEST`.

use crate::RegistryError;
use std::fmt;
use std::path::Path;

const SCHEME: &str = "oci://";

/// A component in a registry: by tag, by digest, or by both (the digest then decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    /// The manifest's digest, `sha256:<hex>`.
    pub digest: Option<String>,
}

impl OciRef {
    /// Whether `source` (a path given on the command line or in a manifest) names a registry.
    pub fn is_oci(source: &Path) -> bool {
        source.to_str().is_some_and(|s| s.starts_with(SCHEME))
    }

    /// The reference in `source`, if it is one; `None` for a file path.
    pub fn from_source(source: &Path) -> Option<Result<OciRef, RegistryError>> {
        Self::is_oci(source).then(|| source.to_str().expect("checked above").parse())
    }

    /// The same artifact, named by its manifest digest.
    pub fn with_digest(&self, digest: &str) -> OciRef {
        OciRef { digest: Some(digest.to_string()), ..self.clone() }
    }

    /// For the OCI client, which names references without a scheme.
    pub fn client_ref(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (_, Some(d)) => {
                oci_client::Reference::with_digest(self.registry.clone(), self.repository.clone(), d.clone())
            }
            (Some(t), None) => {
                oci_client::Reference::with_tag(self.registry.clone(), self.repository.clone(), t.clone())
            }
            (None, None) => {
                oci_client::Reference::with_tag(self.registry.clone(), self.repository.clone(), "latest".into())
            }
        }
    }

    /// The tag, `latest` when neither tag nor digest was given (as docker and oras do).
    pub fn tag_or_latest(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// The registry host without a port, as `--insecure-registry` may name it.
    pub fn host(&self) -> &str {
        self.registry.rsplit_once(':').map_or(&self.registry, |(h, _)| h)
    }
}

impl std::str::FromStr for OciRef {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, RegistryError> {
        let bad = |reason: &str| RegistryError::BadReference { reference: s.to_string(), reason: reason.into() };
        let rest = s.strip_prefix(SCHEME).ok_or_else(|| bad("it does not start with oci://"))?;
        let (registry, _) = rest.split_once('/').ok_or_else(|| bad("it names no repository after the registry"))?;
        // Without a host, the OCI client would quietly pick Docker Hub; membrane asks for one.
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad(&format!("{registry:?} is not a registry host (it has no dot or port)")));
        }
        let parsed: oci_client::Reference = rest.parse().map_err(|e: oci_client::ParseError| bad(&e.to_string()))?;
        if let Some(digest) = parsed.digest()
            && !valid_sha256(digest)
        {
            return Err(bad("the digest is not sha256: followed by 64 lowercase hex digits"));
        }
        // The client fills in `latest` for a bare name; keep what the user wrote.
        let has_tag = {
            let name_end = rest.find('@').unwrap_or(rest.len());
            let last = &rest[..name_end];
            last.rsplit_once('/').is_some_and(|(_, tail)| tail.contains(':'))
        };
        Ok(OciRef {
            registry: parsed.registry().to_string(),
            repository: parsed.repository().to_string(),
            tag: if has_tag { parsed.tag().map(str::to_string) } else { None },
            digest: parsed.digest().map(str::to_string),
        })
    }
}

impl fmt::Display for OciRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

pub(crate) fn valid_sha256(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_tags_digests_and_ports() {
        let r: OciRef = "oci://127.0.0.1:5000/acme/hello:v1".parse().unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "acme/hello", Some("v1"))
        );
        assert_eq!(r.host(), "127.0.0.1");
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/acme/hello:v1");
        let r: OciRef = format!("oci://ghcr.io/acme/hello@{D}").parse().unwrap();
        assert_eq!((r.tag.as_deref(), r.digest.as_deref()), (None, Some(D)));
        assert_eq!(r.tag_or_latest(), None);
        let r: OciRef = "oci://localhost:5000/hello".parse().unwrap();
        assert_eq!((r.tag.as_deref(), r.tag_or_latest()), (None, Some("latest")));
        let r: OciRef = format!("oci://ghcr.io/hello:1.0@{D}").parse().unwrap();
        assert_eq!(r.to_string(), format!("oci://ghcr.io/hello:1.0@{D}"));
    }

    #[test]
    fn refuses_what_is_not_a_reference() {
        for bad in [
            "oci://hello:v1",
            "oci://ghcr.io",
            "ghcr.io/hello:v1",
            "oci://ghcr.io/hello@sha256:12",
            "oci://ghcr.io/Hello",
        ] {
            let err = bad.parse::<OciRef>().unwrap_err().to_string();
            assert!(err.contains("oci://REGISTRY/REPOSITORY:TAG"), "{bad}: {err}");
        }
        assert!(OciRef::is_oci(Path::new("oci://ghcr.io/x:1")));
        assert!(!OciRef::is_oci(Path::new("x.wasm")));
    }
}
