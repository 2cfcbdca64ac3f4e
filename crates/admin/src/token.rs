//! The admin token: given by the operator, or generated and written to a file only the
//! owner can read, where `membrane status/swap/rollback` find it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The environment variable that may hold the token.
pub const TOKEN_ENV: &str = "MEMBRANE_ADMIN_TOKEN";

/// Where a generated token for the admin listener on `port` is written:
/// `$XDG_STATE_HOME/membrane/admin-<port>.token`, else under `~/.local/state`.
pub fn default_path(port: u16) -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    state.join("membrane").join(format!("admin-{port}.token"))
}

/// Reads a token file: its first line, without surrounding whitespace.
pub fn read(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is empty"));
    }
    Ok(token)
}

/// A new random token (256 bits, hex).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    hex::encode(bytes)
}

/// Writes `token` to `path` with mode 0600, creating the directory.
pub fn write(path: &Path, token: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Remove first: an existing file keeps its old mode when opened for writing.
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    writeln!(file, "{token}")
}

/// Compares in time independent of where the inputs differ, so that response timing
/// does not reveal a token byte by byte. (Small enough not to need a crate.)
pub fn matches(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_tokens_are_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/admin.token");
        let token = generate();
        assert_eq!(token.len(), 64);
        assert_ne!(token, generate());
        write(&path, &token).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read(&path).unwrap(), token);
        assert!(matches(&token, &token));
        assert!(!matches(&token[1..], &token));
        assert!(!matches(&generate(), &token));
    }
}
