//! A `membrane serve` under attack: its stdout drained (and counted) so a guest may flood
//! it, its memory readable, and a neighbour route to check after each attack.

use crate::util::membrane;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Served {
    pub child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    /// Bytes the server wrote to stdout after its address line.
    pub stdout_bytes: Arc<AtomicU64>,
}

/// The app every served case uses: the hostile guest at `/evil` with `evil_limits`, and
/// `http-hello` as its neighbour everywhere else.
pub fn hostile_app(evil_limits: &str) -> crate::util::TestApp {
    hostile_app_with(evil_limits, "")
}

/// [`hostile_app`] with `evil_grants` for the hostile guest.
pub fn hostile_app_with(evil_limits: &str, evil_grants: &str) -> crate::util::TestApp {
    hostile_app_and(evil_limits, evil_grants, "")
}

/// [`hostile_app_with`] and `more` TOML (tenants, say) at the end of the manifest.
pub fn hostile_app_and(evil_limits: &str, evil_grants: &str, more: &str) -> crate::util::TestApp {
    beside_neighbour(
        &format!(
            "[component.evil]\nsource = \"{{hostile-http}}\"\nlimits = {{ {evil_limits} }}\ngrants = {{ {evil_grants} }}\n"
        ),
        "evil",
        "/evil",
        more,
    )
}

/// An app of `components` (TOML tables) with `routed` served at `path`, `http-hello` as
/// the neighbour everywhere else (at `/neighbour` when `routed` takes `/`), and `more` TOML
/// at the end; the audit log goes to `audit.jsonl` beside the manifest.
pub fn beside_neighbour(components: &str, routed: &str, path: &str, more: &str) -> crate::util::TestApp {
    let neighbour = if path == "/" { "/neighbour" } else { "/" };
    crate::util::TestApp::new(&format!(
        r#"[app]
name = "hostile"
audit = "audit.jsonl"

{components}
[component.good]
source = "{{http-hello}}"

[[route]]
path = "{path}"
component = "{routed}"

[[route]]
path = "{neighbour}"
component = "good"
{more}"#
    ))
}

impl Served {
    pub fn start(args: &[&str]) -> Served {
        Served::start_with_env(args, &[])
    }

    /// [`Served::start`] with `env` added to the server's environment.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Served {
        let mut child = membrane()
            .envs(env.iter().copied())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = crate::log_sink::collect(child.stderr.take().unwrap());
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("serving http://")
            .unwrap_or_else(|| panic!("no address line; stdout: {line:?}; stderr: {}", stderr.lock().unwrap()))
            .parse()
            .unwrap();
        let stdout_bytes = Arc::new(AtomicU64::new(0));
        let counter = stdout_bytes.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        Served { child, addr, stderr, stdout_bytes }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (up to a minute) until the server's log holds `text`: a log line may reach
    /// stderr just after the response that it explains.
    pub fn wait_for_log(&self, text: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !self.stderr().contains(text) {
            assert!(std::time::Instant::now() < deadline, "{text} missing:\n{}", self.stderr());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The server's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The server's peak resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// A KiB figure of the server's /proc status.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status.lines().find_map(|l| l.strip_prefix(field)).unwrap().trim().trim_end_matches(" kB").parse().unwrap()
    }

    /// How many file descriptors the server holds open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).unwrap().count()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        get(self.addr, path)
    }

    /// The neighbour answers as it always does.
    #[track_caller]
    pub fn assert_neighbour_answers(&self) {
        self.assert_neighbour_answers_at("localhost");
    }

    /// The neighbour answers as it always does, asked under `host`.
    #[track_caller]
    pub fn assert_neighbour_answers_at(&self, host: &str) {
        let (status, body) =
            request(self.addr, &format!("GET /neighbour HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"));
        assert_eq!(
            (status, body.as_str()),
            (200, "hello from /neighbour; request #1 of this instance"),
            "stderr:\n{}",
            self.stderr()
        );
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` over a fresh HTTP/1.1 connection: status and body.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
}

/// Sends raw bytes and reads the whole response: status and (unchunked, trimmed) body.
pub fn request(addr: SocketAddr, raw: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    crate::raw_http::parse(&String::from_utf8_lossy(&response))
}
