//! Running the `membrane` binary and reading what it did.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

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
        assert_eq!(self.code, code, "unexpected exit code; stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn assert_stdout_has(&self, text: &str) -> &Self {
        assert!(self.stdout.contains(text), "stdout lacks {text:?}:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn assert_stderr_has(&self, text: &str) -> &Self {
        assert!(self.stderr.contains(text), "stderr lacks {text:?}:\n{}", self.stderr);
        self
    }
}

/// An interpreted guest (`py-hello`, `js-hello`): its component, built from `guests/<name>`
/// on first use by `scripts/build-interpreted-guests.sh`, which installs the pinned
/// componentize-py and componentize-js under `target/` when missing and keeps the builds
/// there, so later runs are offline and take no time.
pub fn interpreted_guest(name: &str) -> String {
    static BUILT: OnceLock<Vec<(String, String)>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-interpreted-guests.sh");
        let out = Command::new("bash").arg(&script).stderr(Stdio::inherit()).output().expect("running bash");
        assert!(out.status.success(), "{} failed; run it by hand to see why", script.display());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect()
    });
    built
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| panic!("no interpreted guest named {name}; built: {built:?}"))
}

/// A cache shared by the tests, so each guest is compiled once per test run.
pub fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("membrane-test-cache")
}

/// The binary, with a clean environment apart from the shared cache: its data dir is the
/// tests' own, and no registry credentials are read from the user's docker config.
pub fn membrane() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_membrane"));
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    cmd.env_remove("MEMBRANE_LOG")
        .env("MEMBRANE_CACHE_DIR", shared_cache())
        .env("MEMBRANE_DATA_DIR", tmp.join("membrane-test-data"))
        .env("DOCKER_CONFIG", tmp.join("no-docker-config"));
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

/// `text` with every `{guest}` placeholder (e.g. `{caller}`) replaced by that guest's path.
pub fn with_guests(text: &str) -> String {
    let mut text = text.to_string();
    for (name, path) in guests::ALL {
        text = text.replace(&format!("{{{name}}}"), path);
    }
    text
}

/// An app written to a temporary folder: `membrane.toml` with `{guest}` placeholders
/// (e.g. `{caller}`) replaced by the paths of the built guests.
pub struct TestApp {
    pub dir: tempfile::TempDir,
}

impl TestApp {
    pub fn new(manifest: &str) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("membrane.toml"), with_guests(manifest)).unwrap();
        TestApp { dir }
    }

    pub fn manifest(&self) -> PathBuf {
        self.dir.path().join("membrane.toml")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `membrane run membrane.toml -- <args>`.
    pub fn run(&self, args: &[&str]) -> Outcome {
        let manifest = self.manifest();
        let mut all = vec!["run", manifest.to_str().unwrap(), "--"];
        all.extend_from_slice(args);
        membrane_with(all)
    }

    pub fn check(&self, extra: &[&str]) -> Outcome {
        let manifest = self.manifest();
        let mut all = vec!["check"];
        all.extend_from_slice(extra);
        all.push(manifest.to_str().unwrap());
        membrane_with(all)
    }

    /// The audit events written to `audit.jsonl` in the app's folder.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A `membrane.toml` for an app whose entry is `entry`: each component as
/// `(name, extra TOML lines)` with `source = "{name's guest}"` unless the lines set one,
/// and each link as `(from, interface, to, extra TOML lines)`. The audit log goes to
/// `audit.jsonl` beside the manifest.
pub fn manifest(entry: &str, components: &[(&str, &str)], links: &[(&str, &str, &str, &str)]) -> String {
    let mut text = format!("[app]\nname = \"test\"\nentry = \"{entry}\"\naudit = \"audit.jsonl\"\n");
    for (name, extra) in components {
        text.push_str(&format!("\n[component.{name}]\n"));
        if !extra.contains("source =") {
            text.push_str(&format!("source = \"{{{name}}}\"\n"));
        }
        text.push_str(extra);
        text.push('\n');
    }
    for (from, iface, to, extra) in links {
        text.push_str(&format!("\n[[link]]\nfrom = \"{from}\"\nimport = \"{iface}\"\nto = \"{to}\"\n{extra}\n"));
    }
    text
}

pub const COUNTER: &str = "membrane:test/counter@0.1.0";
pub const MEMORY: &str = "membrane:test/memory@0.1.0";
pub const FAULTS: &str = "membrane:test/faults@0.1.0";

/// The caller linked to one provider for all three of its imports, with `provider` settings
/// and `link` settings given as TOML lines.
pub fn caller_app(provider: &str, link: &str) -> String {
    manifest(
        "caller",
        &[("caller", ""), ("provider", provider)],
        &[
            ("caller", COUNTER, "provider", link),
            ("caller", MEMORY, "provider", link),
            ("caller", FAULTS, "provider", link),
        ],
    )
}

/// Sends raw HTTP/1.1 bytes over a fresh connection and reads the whole response: status
/// and body.
#[track_caller]
pub fn request(addr: SocketAddr, raw: &str) -> (u16, String) {
    try_request(addr, raw).unwrap_or_else(|| panic!("cannot connect to {addr}"))
}

/// [`request`], or `None` when the connection cannot be made or written to.
pub fn try_request(addr: SocketAddr, raw: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(raw.as_bytes()).ok()?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    Some(parse(&String::from_utf8_lossy(&response)))
}

use crate::raw_http::parse;

/// A running `membrane serve --listen 127.0.0.1:0`, killed (SIGKILL) when dropped.
pub struct Served {
    pub child: Child,
    pub addr: SocketAddr,
    /// The metrics listener, when `--metrics-listen` was given.
    pub metrics: Option<SocketAddr>,
    /// The admin listener (on a free port unless the test set `--admin-listen`).
    pub admin: Option<SocketAddr>,
    /// The token file the server generated, when it generated one.
    pub admin_token_file: Option<std::path::PathBuf>,
    stderr: Arc<Mutex<String>>,
}

impl Served {
    pub fn start(args: &[&str]) -> Served {
        Served::start_with(args, &[])
    }

    /// With `env` set for the server besides the clean environment of [`membrane`].
    pub fn start_with<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> Served {
        // Tests run side by side: the admin API's fixed default port would collide.
        let own_admin = args.iter().any(|a| a.as_ref() == "--admin-listen");
        let mut child = membrane()
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(if own_admin { &[][..] } else { &["--admin-listen", "127.0.0.1:0"][..] })
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = crate::log_sink::collect(child.stderr.take().unwrap());
        // The address lines, in order: serving, metrics (when asked for), the admin token
        // file (when generated) and the admin listener (unless off).
        let admin_off = args.windows(2).any(|w| w[0].as_ref() == "--admin-listen" && w[1].as_ref() == "off");
        let (mut addr, mut metrics, mut admin, mut admin_token_file) = (None, None, None, None);
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let wants_metrics = args.iter().any(|a| a.as_ref() == "--metrics-listen");
        while addr.is_none() || (wants_metrics && metrics.is_none()) || (!admin_off && admin.is_none()) {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                panic!("the server ended before printing its addresses; stderr: {}", stderr.lock().unwrap());
            }
            let line = line.trim();
            if let Some(a) = line.strip_prefix("serving http://") {
                addr = Some(a.parse().unwrap());
            } else if let Some(m) = line.strip_prefix("metrics http://") {
                metrics = Some(m.trim_end_matches("/metrics").parse().unwrap());
            } else if let Some(f) = line.strip_prefix("admin token in ") {
                admin_token_file = Some(std::path::PathBuf::from(f));
            } else if let Some(a) = line.strip_prefix("admin http://") {
                admin = Some(a.parse().unwrap());
            }
        }
        Served { child, addr: addr.unwrap(), metrics, admin, admin_token_file, stderr }
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until the server's log satisfies `holds`, and asserts that it
    /// does: a line is read from the server's stderr as it comes, which may be after the
    /// response that led to it.
    #[track_caller]
    pub fn assert_log(&self, what: &str, holds: impl Fn(&str) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !holds(&self.stderr()) {
            assert!(std::time::Instant::now() < deadline, "no {what} in the log:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no drain, no flush, no destructor.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}
