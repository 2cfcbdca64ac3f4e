use crate::util::{guests, membrane, membrane_with, output};
use std::fs;
use std::net::TcpListener;
use std::path::Path;

/// `membrane run [flags] fs-probe <op...>` and the probe's one result line.
fn fs_probe(flags: &[&str], op: &[&str]) -> String {
    let mut args = vec!["run"];
    args.extend_from_slice(flags);
    args.push(guests::FS_PROBE);
    args.push("--");
    args.extend_from_slice(op);
    let out = membrane_with(&args);
    out.assert_code(0);
    out.stdout.lines().last().unwrap_or_default().to_string()
}

/// A host tree: `root/data/{hello.txt,sub/}` beside `root/secret.txt`.
fn tree() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("data/sub")).unwrap();
    fs::write(root.path().join("data/hello.txt"), "hi there").unwrap();
    fs::write(root.path().join("secret.txt"), "top secret").unwrap();
    root
}

fn dir_flag(host: &Path, guest: &str, mode: &str) -> String {
    format!("{}::{guest}{mode}", host.display())
}

#[test]
fn hello_runs_with_no_grants_and_sees_nothing() {
    membrane_with(["run", guests::HELLO, "--", "one", "two"])
        .assert_code(0)
        .assert_stdout_has("hello from inside a membrane")
        .assert_stdout_has(r#"args: ["one", "two"]"#)
        .assert_stdout_has("env: (none)");
}

#[test]
fn env_vars_are_visible_only_when_granted() {
    let out = output(membrane().env("HOST_ONLY", "leaked").args(["run", guests::HELLO]));
    out.assert_code(0).assert_stdout_has("env: (none)");
    assert!(!out.stdout.contains("leaked"));

    output(membrane().env("HOST_ONLY", "inherited").args([
        "run",
        "--env",
        "GREETING=hi",
        "--env",
        "HOST_ONLY",
        guests::HELLO,
    ]))
    .assert_code(0)
    .assert_stdout_has("env: GREETING=hi")
    .assert_stdout_has("env: HOST_ONLY=inherited");
}

#[test]
fn files_are_unreachable_without_a_dir_grant() {
    let root = tree();
    let host_file = root.path().join("data/hello.txt");
    let line = fs_probe(&[], &["read", host_file.to_str().unwrap()]);
    assert!(line.starts_with("denied:"), "{line}");
    let line = fs_probe(&[], &["list", "/"]);
    assert!(line.starts_with("denied:"), "{line}");
}

#[test]
fn a_read_write_dir_grant_reads_and_writes_inside_it() {
    let root = tree();
    let dir = dir_flag(&root.path().join("data"), "/data", "");
    assert_eq!(fs_probe(&["--dir", &dir], &["read", "/data/hello.txt"]), "ok: read 8 bytes: hi there");
    assert_eq!(fs_probe(&["--dir", &dir], &["write", "/data/new.txt", "made inside"]), "ok: wrote /data/new.txt");
    assert_eq!(fs::read_to_string(root.path().join("data/new.txt")).unwrap(), "made inside");
    assert_eq!(fs_probe(&["--dir", &dir], &["list", "/data"]), "ok: entries: hello.txt,new.txt,sub");
    // Outside the preopen nothing is reachable, even by a path that climbs out of it.
    let line = fs_probe(&["--dir", &dir], &["read", "/data/../secret.txt"]);
    assert!(line.starts_with("denied:"), "{line}");
    let line = fs_probe(&["--dir", &dir], &["write", "/data/../escaped.txt", "x"]);
    assert!(line.starts_with("denied:"), "{line}");
    assert!(!root.path().join("escaped.txt").exists());
}

#[test]
fn symlinks_do_not_escape_a_preopen() {
    let root = tree();
    let data = root.path().join("data");
    let secret = root.path().join("secret.txt");
    // An absolute symlink, a relative one that climbs out, and a chain ending in `/`.
    std::os::unix::fs::symlink(&secret, data.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", data.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("chain2/", data.join("chain1")).unwrap();
    std::os::unix::fs::symlink("..", data.join("chain2")).unwrap();
    std::os::unix::fs::symlink(root.path(), data.join("abs-dir")).unwrap();
    let dir = dir_flag(&data, "/data", "");
    for path in ["/data/abs-link", "/data/rel-link", "/data/chain1/secret.txt", "/data/abs-dir/secret.txt"] {
        let line = fs_probe(&["--dir", &dir], &["read", path]);
        assert!(line.starts_with("denied:"), "{path}: {line}");
        assert!(!line.contains("top secret"), "{path}: {line}");
    }
    // Writing through an escaping link must not create or change anything outside.
    let line = fs_probe(&["--dir", &dir], &["write", "/data/abs-link", "overwritten"]);
    assert!(line.starts_with("denied:"), "{line}");
    assert_eq!(fs::read_to_string(&secret).unwrap(), "top secret");
}

#[test]
fn a_read_only_dir_refuses_every_mutation() {
    let root = tree();
    let data = root.path().join("data");
    let ro = dir_flag(&data, "/ro", ":ro");
    let scratch = tempfile::tempdir().unwrap();
    let rw = dir_flag(scratch.path(), "/rw", "");
    let flags = ["--dir", ro.as_str(), "--dir", rw.as_str()];
    assert_eq!(fs_probe(&flags, &["read", "/ro/hello.txt"]), "ok: read 8 bytes: hi there");
    assert_eq!(fs_probe(&flags, &["list", "/ro"]), "ok: entries: hello.txt,sub");
    let attempts: &[&[&str]] = &[
        &["write", "/ro/hello.txt", "changed"],
        &["append", "/ro/hello.txt", "more"],
        &["truncate", "/ro/hello.txt"],
        &["create", "/ro/new.txt"],
        &["mkdir", "/ro/newdir"],
        &["rmdir", "/ro/sub"],
        &["unlink", "/ro/hello.txt"],
        &["rename", "/ro/hello.txt", "/ro/renamed.txt"],
        &["link", "/ro/hello.txt", "/ro/hard.txt"],
        &["set-times", "/ro/hello.txt"],
        // Out of a read-only dir into a writable one is still a mutation of the first.
        &["rename", "/ro/hello.txt", "/rw/stolen.txt"],
    ];
    for op in attempts {
        let line = fs_probe(&flags, op);
        assert!(line.starts_with("denied:"), "{op:?} was allowed: {line}");
    }
    // Nothing on the host changed.
    assert_eq!(fs::read_to_string(data.join("hello.txt")).unwrap(), "hi there");
    let mut names: Vec<_> = fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["hello.txt", "sub"]);
    assert_eq!(fs::read_dir(scratch.path()).unwrap().count(), 0);
    let mtime = fs::metadata(data.join("hello.txt")).unwrap().modified().unwrap();
    assert_ne!(mtime, std::time::SystemTime::UNIX_EPOCH);
}

#[test]
fn a_hard_link_from_read_only_into_writable_is_refused() {
    let root = tree();
    let ro = dir_flag(&root.path().join("data"), "/ro", ":ro");
    let scratch = tempfile::tempdir().unwrap();
    let rw = dir_flag(scratch.path(), "/rw", "");
    let line = fs_probe(&["--dir", &ro, "--dir", &rw], &["link", "/ro/hello.txt", "/rw/linked.txt"]);
    assert!(line.starts_with("denied:"), "{line}");
    assert!(!scratch.path().join("linked.txt").exists());
}

fn net_probe(flags: &[&str], op: &str, target: &str) -> String {
    let mut args = vec!["run"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[guests::NET_PROBE, "--", op, target]);
    let out = membrane_with(&args);
    out.assert_code(0);
    out.stdout.lines().last().unwrap_or_default().to_string()
}

#[test]
fn tcp_connects_only_to_allowed_addresses() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let port = listener.local_addr().unwrap().port();

    let line = net_probe(&[], "connect", &addr);
    assert!(line.starts_with("denied:"), "{line}");
    let line = net_probe(&["--allow-tcp", &addr], "connect", &addr);
    assert_eq!(line, format!("ok: connected to {addr}"));
    // Another port on the same host is not the granted address.
    let other = format!("127.0.0.1:{}", port.wrapping_add(1).max(1));
    let line = net_probe(&["--allow-tcp", &other], "connect", &addr);
    assert!(line.starts_with("denied:"), "{line}");
    // A network rule covers every address in it.
    let line = net_probe(&["--allow-tcp", "127.0.0.0/8"], "connect", &addr);
    assert_eq!(line, format!("ok: connected to {addr}"));
}

#[test]
fn dns_lookups_need_allow_dns() {
    let line = net_probe(&[], "lookup", "localhost");
    assert!(line.starts_with("denied:"), "{line}");
    let line = net_probe(&["--allow-dns"], "lookup", "localhost");
    assert!(line.starts_with("ok: resolved localhost to"), "{line}");
}

#[test]
fn denied_connections_are_audited() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let denied = |what: &str| {
        let text = fs::read_to_string(&log).unwrap();
        let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(
            events.iter().any(|e| e["event"] == "denied"
                && e["component"] == "net-probe"
                && e["what"].as_str().unwrap().contains(what)),
            "{what}: {text}"
        );
    };
    // Without a TCP grant not even a socket is made.
    let line = net_probe(&["--audit-log", log.to_str().unwrap()], "connect", &addr);
    assert!(line.starts_with("denied:"), "{line}");
    denied("create-tcp-socket");
    // With one, a connection to an address it does not name is refused.
    let other = format!("127.0.0.1:{}", listener.local_addr().unwrap().port().wrapping_add(1).max(1));
    let line = net_probe(&["--audit-log", log.to_str().unwrap(), "--allow-tcp", &other], "connect", &addr);
    assert!(line.starts_with("denied:"), "{line}");
    denied(&addr);
    // An allowed outbound connection is audited too.
    let line = net_probe(&["--audit-log", log.to_str().unwrap(), "--allow-tcp", &addr], "connect", &addr);
    assert!(line.starts_with("ok:"), "{line}");
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.lines().any(|l| l.contains(r#""event":"granted""#) && l.contains(&addr)), "{text}");
}

#[test]
fn stdin_is_empty_unless_granted() {
    use std::io::Write;
    use std::process::Stdio;
    let run = |grant: bool| {
        let mut cmd = membrane();
        cmd.arg("run");
        if grant {
            cmd.arg("--stdin");
        }
        let mut child = cmd
            .args([guests::HELLO, "--", "--echo-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"typed by the host\n").unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(run(true).contains("stdin: typed by the host"));
    assert!(run(false).contains("stdin: (empty)"));
}
