//! Real servers the state tests need — redis-server and nginx from Debian packages,
//! installed with apt-get when missing — each started on a free loopback port and
//! stopped when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// apt-get takes a lock; tests in this binary run in parallel.
static APT: Mutex<()> = Mutex::new(());

/// The path of `binary`, installing Debian package `package` first when it is missing.
pub fn ensure_installed(binary: &str, package: &str) -> PathBuf {
    let _apt = APT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = find(binary) {
        return path;
    }
    let install = || {
        Command::new("apt-get")
            // Other builds on the machine may hold dpkg's lock for a while; wait for it.
            .args(["-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let updated = Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300", "update"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(updated && install(), "could not install the Debian package {package}; install it to run this test");
    }
    find(binary).unwrap_or_else(|| panic!("the package {package} installed no {binary}"))
}

fn find(binary: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin"])
        .map(|dir| Path::new(dir).join(binary))
        .find(|p| p.is_file())
}

/// A loopback port free at the moment of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something accepts connections on `addr`.
fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening on {addr}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {addr} within 20s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process killed and reaped when dropped.
pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A redis-server of its own, no persistence, on a free loopback port.
pub fn redis() -> Process {
    redis_on(free_port())
}

/// A redis-server of its own on loopback `port`.
pub fn redis_on(port: u16) -> Process {
    let binary = ensure_installed("redis-server", "redis-server");
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting redis-server");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_listening(addr, &mut child, "redis-server");
    Process { child, addr, _dir: Some(dir) }
}

/// A redis-server that speaks only TLS, with a certificate for 127.0.0.1 issued by a CA
/// of its own; returns the server and the CA certificate's PEM file.
pub fn redis_tls() -> (Process, PathBuf) {
    let binary = ensure_installed("redis-server", "redis-server");
    let openssl = ensure_installed("openssl", "openssl");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let out = Command::new(&openssl).current_dir(d).args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=membrane test CA"],
    ]
    .concat());
    run(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]].concat());
    std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    let port = free_port();
    let mut child = Command::new(binary)
        .current_dir(d)
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--tls-cert-file", "server.pem", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.pem"])
        .args(["--tls-auth-clients", "no", "--dir", "."])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting redis-server with TLS");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_listening(addr, &mut child, "redis-server (TLS)");
    let ca = d.join("ca.pem");
    (Process { child, addr, _dir: Some(dir) }, ca)
}

impl Process {
    /// `redis://ADDR` for a redis-server.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

/// nginx balancing over `upstreams` round-robin, on a free loopback port, as one process
/// (no master) so that stopping it leaves no worker behind. A request that
/// cannot reach an upstream (refused, reset before sending) is passed to the next; one
/// that was sent is not repeated, as nginx does for POST by default.
pub fn nginx(upstreams: &[SocketAddr]) -> Process {
    let binary = ensure_installed("nginx", "nginx");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display();
    let servers: String = upstreams.iter().map(|u| format!("    server {u} max_fails=1 fail_timeout=30s;\n")).collect();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         upstream membrane {{\n{servers}    keepalive 16;\n  }}\n  \
         server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://membrane;\n      \
         proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      \
         proxy_next_upstream error timeout;\n      proxy_connect_timeout 1s;\n    }}\n  }}\n}}\n"
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut child = Command::new(binary)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting nginx");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_listening(addr, &mut child, "nginx");
    Process { child, addr, _dir: Some(dir) }
}
