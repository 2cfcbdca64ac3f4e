//! membrane's content-addressed store of pulled artifacts, under the data dir:
//! `oci/blobs/sha256/<hex>` (manifests and layers, checked against their name on every
//! read), `oci/tags/<registry>/<repository>/@<tag>` (the manifest digest a tag resolved to
//! when last pulled) and `oci/signatures/sha256/<layer hex>/<sig hex>.sig` (every signature
//! published for a component).

use crate::reference::{OciRef, valid_sha256};
use crate::{RegistryError, sha256_digest};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// What reading a blob found.
#[derive(Debug)]
pub enum Blob {
    Missing,
    Verified(Vec<u8>),
    /// The file is there but its content has another digest.
    Corrupted {
        path: PathBuf,
        actual: String,
    },
}

impl Store {
    /// The store inside membrane's data dir.
    pub fn in_data_dir(data_dir: &Path) -> Store {
        Store { root: data_dir.join("oci") }
    }

    /// `$XDG_DATA_HOME/membrane`, else `$HOME/.local/share/membrane`.
    pub fn default_data_dir() -> Option<PathBuf> {
        std::env::var_os("XDG_DATA_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .map(|base| base.join("membrane"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives. Digests are checked before they become paths.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        assert!(valid_sha256(digest), "blob digests are checked before use: {digest}");
        self.root.join("blobs/sha256").join(&digest["sha256:".len()..])
    }

    /// The blob, checked against its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Blob, RegistryError> {
        let path = self.blob_path(digest);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let actual = sha256_digest(&bytes);
                if actual == digest { Ok(Blob::Verified(bytes)) } else { Ok(Blob::Corrupted { path, actual }) }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Blob::Missing),
            Err(source) => Err(store_error(&path, source)),
        }
    }

    /// Stores `bytes` as `digest`, refusing bytes that do not match it.
    pub fn write_blob(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, RegistryError> {
        let actual = sha256_digest(bytes);
        assert_eq!(actual, digest, "callers verify blobs before storing them");
        let path = self.blob_path(digest);
        write_atomically(&path, bytes)?;
        Ok(path)
    }

    /// The manifest digest `reference`'s tag resolved to when it was last pulled.
    pub fn tag(&self, reference: &OciRef) -> Option<String> {
        let path = self.tag_path(reference)?;
        let text = std::fs::read_to_string(path).ok()?;
        let digest = text.trim();
        valid_sha256(digest).then(|| digest.to_string())
    }

    pub fn record_tag(&self, reference: &OciRef, manifest_digest: &str) -> Result<(), RegistryError> {
        match self.tag_path(reference) {
            Some(path) => write_atomically(&path, format!("{manifest_digest}\n").as_bytes()),
            None => Ok(()),
        }
    }

    fn tag_path(&self, reference: &OciRef) -> Option<PathBuf> {
        // Repositories nest (`a/b`), so a tag is a file `@tag` that no repository name can be.
        let tag = reference.tag_or_latest()?;
        Some(self.root.join("tags").join(&reference.registry).join(&reference.repository).join(format!("@{tag}")))
    }

    /// The signatures fetched for the component whose digest is `layer_digest`.
    pub fn signatures(&self, layer_digest: &str) -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(self.signature_dir(layer_digest)) else { return Vec::new() };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "sig"))
            .collect();
        paths.sort();
        paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
    }

    pub fn write_signature(&self, layer_digest: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        let name = format!("{}.sig", &sha256_digest(bytes)["sha256:".len()..]);
        write_atomically(&self.signature_dir(layer_digest).join(name), bytes)
    }

    fn signature_dir(&self, layer_digest: &str) -> PathBuf {
        assert!(valid_sha256(layer_digest));
        self.root.join("signatures/sha256").join(&layer_digest["sha256:".len()..])
    }
}

fn store_error(path: &Path, source: std::io::Error) -> RegistryError {
    RegistryError::Store { path: path.display().to_string(), source }
}

/// A temporary file renamed into place: a reader never sees half an entry.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let dir = path.parent().expect("store paths have a parent");
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        file.write_all(bytes)?;
        file.as_file().sync_data()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    write().map_err(|source| store_error(path, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_checked_on_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_data_dir(dir.path());
        let digest = sha256_digest(b"component");
        assert!(matches!(store.read_blob(&digest).unwrap(), Blob::Missing));
        let path = store.write_blob(&digest, b"component").unwrap();
        assert!(matches!(store.read_blob(&digest).unwrap(), Blob::Verified(b) if b == b"component"));
        std::fs::write(&path, b"tampered").unwrap();
        match store.read_blob(&digest).unwrap() {
            Blob::Corrupted { actual, .. } => assert_eq!(actual, sha256_digest(b"tampered")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tags_of_nested_repositories_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_data_dir(dir.path());
        let a: OciRef = "oci://localhost:5000/a:b".parse().unwrap();
        let ab: OciRef = "oci://localhost:5000/a/b:c".parse().unwrap();
        let (da, dab) = (sha256_digest(b"a"), sha256_digest(b"ab"));
        store.record_tag(&a, &da).unwrap();
        store.record_tag(&ab, &dab).unwrap();
        assert_eq!(store.tag(&a), Some(da));
        assert_eq!(store.tag(&ab), Some(dab));
        assert_eq!(store.tag(&"oci://localhost:5000/a:c".parse().unwrap()), None);
    }
}
