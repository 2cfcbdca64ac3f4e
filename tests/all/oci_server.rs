//! A real OCI registry (Debian's `docker-registry`, the CNCF distribution server) on a free
//! loopback port with its storage in a temporary folder, and the independent client oras-py
//! (PyPI `oras`), both installed when missing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Installs are serialized: tests run in parallel, and apt and pip lock.
static INSTALL: Mutex<()> = Mutex::new(());

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const ORAS_VERSION: &str = "0.2.43";

/// Installs a Debian package when `binary` is missing (apt-get update only if that fails).
pub fn ensure_apt(package: &str, binary: &str) {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if Path::new(binary).exists() {
        return;
    }
    let install = || {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").args(["-o", "DPkg::Lock::Timeout=300", "update"]).status();
        assert!(install(), "could not install {package} with apt-get; install it and run the tests again");
    }
    assert!(Path::new(binary).exists(), "{package} is installed but {binary} is missing");
}

/// A registry serving plain HTTP on 127.0.0.1, killed when dropped.
pub struct Registry {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        ensure_apt("docker-registry", REGISTRY_BIN);
        let dir = tempfile::tempdir().unwrap();
        let addr = free_port();
        let mut registry = Registry { child: None, addr, dir };
        registry.spawn();
        registry
    }

    /// `127.0.0.1:PORT`, as a reference's registry part.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `oci://127.0.0.1:PORT/<repo>`.
    pub fn oci(&self, repo: &str) -> String {
        format!("oci://{}/{repo}", self.addr)
    }

    /// Where the registry keeps what it stores.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    fn spawn(&mut self) {
        let config = self.dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {}\n",
                self.storage().display(),
                self.addr
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .args(["serve", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http_status(self.addr, "/v2/") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not answer on {}: {}", self.addr, self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Stops the server; its storage stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nothing listens on right now.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// A Python with oras-py, in a virtual environment under the test target folder.
fn oras_python() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oras-{ORAS_VERSION}"));
    let python = venv.join("bin/python");
    let ready =
        |python: &Path| Command::new(python).args(["-c", "import oras.client"]).status().is_ok_and(|s| s.success());
    if python.exists() && ready(&python) {
        return python;
    }
    let status = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().expect("running python3");
    assert!(status.success(), "python3 -m venv {} failed", venv.display());
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", &format!("oras=={ORAS_VERSION}")])
        .status()
        .expect("running pip");
    assert!(status.success() && ready(&python), "could not install oras {ORAS_VERSION} from PyPI");
    python
}

/// Runs `tests/all/oras_client.py` with `args`; returns stdout, panicking with its output on failure.
pub fn oras(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all/oras_client.py");
    let out = Command::new(oras_python()).arg(script).args(args).output().expect("running oras");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "oras {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}
