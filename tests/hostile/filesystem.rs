use crate::util::{guests, membrane_with};
use std::os::unix::fs::symlink;

fn fs_probe(dir: &str, op: &[&str]) -> String {
    let mut args = vec!["run", "--timeout", "10s", "--dir", dir, guests::FS_PROBE, "--"];
    args.extend_from_slice(op);
    let out = membrane_with(&args);
    out.assert_code(0);
    out.stdout.lines().last().unwrap_or_default().to_string()
}

#[test]
fn symlink_loops_and_long_chains_end_in_an_error_not_a_hang() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("real.txt"), "real").unwrap();
    symlink("loop-b", data.join("loop-a")).unwrap();
    symlink("loop-a", data.join("loop-b")).unwrap();
    symlink("self", data.join("self")).unwrap();
    symlink("dir-loop/dir-loop/", data.join("dir-loop")).unwrap();
    // A chain of 100 links, each to the next, ending at a real file: deeper than the
    // kernel follows.
    for i in 0..100 {
        symlink(format!("chain{}", i + 1), data.join(format!("chain{i}"))).unwrap();
    }
    symlink("real.txt", data.join("chain100")).unwrap();
    let dir = format!("{}::/data", data.display());
    for (op, path) in [
        ("read", "/data/loop-a"),
        ("read", "/data/self"),
        ("read", "/data/dir-loop/x"),
        ("list", "/data/dir-loop/"),
        ("write", "/data/loop-a"),
        ("read", "/data/chain0"),
        ("create", "/data/self/new"),
    ] {
        let args: Vec<&str> = if op == "write" { vec![op, path, "x"] } else { vec![op, path] };
        let line = fs_probe(&dir, &args);
        assert!(line.starts_with("denied:"), "{op} {path}: {line}");
    }
    // The links are as they were, and the neighbour file still reads.
    assert_eq!(std::fs::read_link(data.join("self")).unwrap().to_str(), Some("self"));
    assert_eq!(fs_probe(&dir, &["read", "/data/real.txt"]), "ok: read 4 bytes: real");
}

#[test]
fn open_with_truncate_through_a_symlink_into_a_read_only_dir_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let ro = root.path().join("ro");
    let rw = root.path().join("rw");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("keep.txt"), "keep me").unwrap();
    // A link inside the writable dir pointing at the read-only file by absolute path.
    symlink(ro.join("keep.txt"), rw.join("to-ro")).unwrap();
    let ro_flag = format!("{}::/ro:ro", ro.display());
    let rw_flag = format!("{}::/rw", rw.display());
    for op in [&["truncate", "/rw/to-ro"][..], &["write", "/rw/to-ro", "gone"], &["truncate", "/ro/keep.txt"]] {
        let mut args = vec!["run", "--dir", ro_flag.as_str(), "--dir", rw_flag.as_str(), guests::FS_PROBE, "--"];
        args.extend_from_slice(op);
        let out = membrane_with(&args);
        out.assert_code(0);
        assert!(out.stdout.trim_end().lines().last().unwrap().starts_with("denied:"), "{op:?}: {}", out.stdout);
    }
    assert_eq!(std::fs::read_to_string(ro.join("keep.txt")).unwrap(), "keep me");
}

/// A granted directory removed while the app serves (say by a component with `rw` on its
/// parent) fails the requests that need it with a 500 and a log line naming it; the host
/// used to panic on the request path.
#[test]
fn a_granted_directory_removed_while_serving_fails_only_its_requests() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let web = format!(
        "[component.web]\nsource = \"{{http-hello}}\"\ngrants.dirs = [{{ host = \"{}\", guest = \"/data\" }}]\n",
        data.display()
    );
    let app = crate::served::beside_neighbour(&web, "web", "/", "");
    let server = crate::served::Served::start(&[app.manifest().to_str().unwrap()]);
    assert_eq!(server.get("/").0, 200, "{}", server.stderr());
    std::fs::remove_dir(&data).unwrap();
    for _ in 0..3 {
        assert_eq!(server.get("/"), (500, "internal error".to_string()), "{}", server.stderr());
        server.assert_neighbour_answers();
    }
    server.wait_for_log("cannot grant directory");
    crate::assert_no_host_panic(&server.stderr());
}
