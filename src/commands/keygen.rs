//! `membrane keygen`: an ed25519 key pair for signing components.

use anyhow::Context;
use clap::Parser;
use membrane_runtime::registry::SecretKey;
use std::io::Write;
use std::path::PathBuf;

/// Make an ed25519 key pair: the secret key in KEY (readable by its owner only), the
/// public key in KEY.pub and on stdout, as trusted_keys takes it.
#[derive(Parser, Debug)]
pub struct KeygenCommand {
    /// Where to write the secret key; never overwritten.
    #[arg(value_name = "KEY")]
    pub key: PathBuf,
}

impl KeygenCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let key = SecretKey::generate()?;
        let public = key.public().to_string();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&self.key).with_context(|| {
            format!(
                "{}: cannot create it (an existing key is never overwritten; pick another path)",
                self.key.display()
            )
        })?;
        file.write_all(key.to_text().as_bytes()).with_context(|| format!("{}: cannot write it", self.key.display()))?;
        let mut pub_path = self.key.clone().into_os_string();
        pub_path.push(".pub");
        let pub_path = PathBuf::from(pub_path);
        std::fs::write(&pub_path, format!("{public}\n"))
            .with_context(|| format!("{}: cannot write it", pub_path.display()))?;
        println!("{public}");
        eprintln!(
            "wrote the secret key to {} and the public key to {}; trust it with trusted_keys = [\"{public}\"]",
            self.key.display(),
            pub_path.display()
        );
        Ok(())
    }
}
