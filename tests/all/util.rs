//! Running the `membrane` binary and reading what it did.

use std::path::{Path, PathBuf};
use std::process::Command;

pub use membrane_test_guests as guests;

/// What one run of the binary did.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_stdout_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_stderr_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}:\n{}",
            self.stderr
        );
        self
    }
}

/// A cache shared by the tests, so each guest is compiled once per test run.
pub fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("membrane-test-cache")
}

/// The binary, with a clean environment apart from the shared cache.
pub fn membrane() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_membrane"));
    cmd.env_remove("MEMBRANE_LOG")
        .env("MEMBRANE_CACHE_DIR", shared_cache());
    cmd
}

pub fn output(cmd: &mut Command) -> Outcome {
    let out = cmd.output().expect("running membrane");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `membrane <args>`.
pub fn membrane_with<I, S>(args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    output(membrane().args(args))
}
