//! Detached ed25519 signatures over a component's sha256 digest: `membrane keygen` makes a
//! key pair, `membrane sign` writes `FILE.sig` beside the file, `membrane push` publishes it
//! as an OCI referrer, and a component with `trusted_keys` starts only with a signature
//! that verifies under one of them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// What is signed: this prefix and the digest, so a membrane signature can never be
/// mistaken for a signature over anything else.
const CONTEXT: &str = "membrane-signature-v1:";
const SECRET_PREFIX: &str = "ed25519-secret:";
const PUBLIC_PREFIX: &str = "ed25519:";

/// Why a component's signature is not accepted. Each names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "{file} has no signature ({looked}) but its trusted_keys require one; sign it with \
         `membrane sign FILE --key KEY` (and push it again, for a registry)"
    )]
    Missing { file: String, looked: String },
    #[error("{file}: the signature cannot be read: {reason}; sign the file again with `membrane sign`")]
    Malformed { file: String, reason: String },
    #[error(
        "{file} changed after it was signed: the signature covers {signed} but the file is {actual}; \
         if the change is intended, sign it again"
    )]
    Tampered { file: String, signed: String, actual: String },
    #[error(
        "{file} is signed by {signer}, which is not among its trusted_keys ({trusted}); sign it with \
         a trusted key, or add the signer's public key to trusted_keys if you trust it"
    )]
    Untrusted { file: String, signer: String, trusted: String },
    #[error("{file}: the signature does not verify under {signer}: it is forged or damaged; sign the file again")]
    Invalid { file: String, signer: String },
}

/// An ed25519 signing key; its file holds `ed25519-secret:<base64 seed>`.
pub struct SecretKey(SigningKey);

/// An ed25519 public key, written `ed25519:<base64>` as in `trusted_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

/// The `.sig` file: the signed digest, the signer and the signature, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// `sha256:<hex>` of the component file.
    pub digest: String,
    /// The signer's public key, `ed25519:<base64>`.
    pub key: String,
    /// The ed25519 signature over `membrane-signature-v1:` + `digest`, base64.
    pub signature: String,
}

impl SecretKey {
    pub fn generate() -> anyhow::Result<SecretKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("the system's random source failed: {e}"))?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The key file's text.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}\n", BASE64.encode(self.0.to_bytes()))
    }

    pub fn from_text(text: &str) -> Result<SecretKey, KeyError> {
        let encoded = text.trim().strip_prefix(SECRET_PREFIX).ok_or(KeyError::NotSecret)?;
        let seed: [u8; 32] =
            BASE64.decode(encoded).ok().and_then(|b| b.try_into().ok()).ok_or(KeyError::SecretNot32Bytes)?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// Signs the component whose digest is `digest` (`sha256:<hex>`).
    pub fn sign(&self, digest: &str) -> Signature {
        let signature = self.0.sign(format!("{CONTEXT}{digest}").as_bytes());
        Signature {
            digest: digest.to_string(),
            key: self.public().to_string(),
            signature: BASE64.encode(signature.to_bytes()),
        }
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", BASE64.encode(self.0.as_bytes()))
    }
}

/// A key whose text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a membrane secret key (it does not start with {})", SECRET_PREFIX)]
    NotSecret,
    #[error("the key is not 32 bytes of base64")]
    SecretNot32Bytes,
    #[error("{0:?} is not a public key; write ed25519:<base64>, as `membrane keygen` prints it")]
    NotPublic(String),
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let err = || KeyError::NotPublic(s.to_string());
        let bytes: [u8; 32] = BASE64
            .decode(s.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(err)?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(err)?;
        VerifyingKey::from_bytes(&bytes).map(PublicKey).map_err(|_| err())
    }
}

impl Signature {
    /// Where `membrane sign` puts the signature of `file`: `FILE.sig`.
    pub fn path_beside(file: &Path) -> PathBuf {
        let mut name = file.as_os_str().to_owned();
        name.push(".sig");
        PathBuf::from(name)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a signature serializes") + "\n"
    }

    pub fn parse(file: &str, bytes: &[u8]) -> Result<Signature, SignatureError> {
        serde_json::from_slice(bytes)
            .map_err(|e| SignatureError::Malformed { file: file.into(), reason: e.to_string() })
    }

    /// Accepts this signature for `file` whose content digest is `actual` only when it covers
    /// that digest and verifies under one of `trusted`. Returns the signer.
    pub fn verify(&self, file: &str, actual: &str, trusted: &[PublicKey]) -> Result<PublicKey, SignatureError> {
        if self.digest != actual {
            return Err(SignatureError::Tampered {
                file: file.into(),
                signed: self.digest.clone(),
                actual: actual.into(),
            });
        }
        let malformed = |reason: String| SignatureError::Malformed { file: file.into(), reason };
        let signer: PublicKey = self.key.parse().map_err(|e: KeyError| malformed(e.to_string()))?;
        if !trusted.contains(&signer) {
            return Err(SignatureError::Untrusted {
                file: file.into(),
                signer: signer.to_string(),
                trusted: trusted.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            });
        }
        let bytes: [u8; 64] = BASE64
            .decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed("the signature is not 64 bytes of base64".into()))?;
        signer
            .0
            .verify(format!("{CONTEXT}{}", self.digest).as_bytes(), &ed25519_dalek::Signature::from_bytes(&bytes))
            .map_err(|_| SignatureError::Invalid { file: file.into(), signer: signer.to_string() })?;
        Ok(signer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn a_signature_verifies_only_for_its_digest_and_a_trusted_key() {
        let key = SecretKey::generate().unwrap();
        let other = SecretKey::generate().unwrap();
        let round = SecretKey::from_text(&key.to_text()).unwrap();
        assert_eq!(round.public(), key.public());
        let public: PublicKey = key.public().to_string().parse().unwrap();

        let sig = Signature::parse("f", key.sign(D1).to_json().as_bytes()).unwrap();
        assert_eq!(sig.verify("f", D1, &[other.public(), public.clone()]).unwrap(), public);
        assert!(matches!(sig.verify("f", D2, std::slice::from_ref(&public)), Err(SignatureError::Tampered { .. })));
        assert!(matches!(sig.verify("f", D1, &[other.public()]), Err(SignatureError::Untrusted { .. })));

        // A signature made for another digest, relabelled with this one, is caught.
        let mut forged = key.sign(D2);
        forged.digest = D1.into();
        assert!(matches!(forged.verify("f", D1, &[public]), Err(SignatureError::Invalid { .. })));
    }

    #[test]
    fn keys_are_checked_when_read() {
        assert!(SecretKey::from_text("ed25519:AAAA").is_err());
        assert!("ed25519:AAAA".parse::<PublicKey>().is_err());
        assert!("rsa:AAAA".parse::<PublicKey>().is_err());
        assert_eq!(Signature::path_beside(Path::new("a/b.wasm")), Path::new("a/b.wasm.sig"));
    }
}
