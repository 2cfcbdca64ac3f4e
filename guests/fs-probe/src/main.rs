//! Tries one filesystem operation named on the command line and prints one line:
//! `ok: …` or `denied: <error kind>: <message>`. Always exits 0 when the operation was
//! attempted, so the host's exit code reflects only the membrane, not the probe.
//!
//! Operations: read PATH | write PATH TEXT | append PATH TEXT | create PATH |
//! truncate PATH | list PATH | mkdir PATH | rmdir PATH | unlink PATH | rename FROM TO |
//! link FROM TO | set-times PATH

use std::fs::{self, OpenOptions};
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str {
        args.get(i).map(String::as_str).unwrap_or_else(|| {
            eprintln!("fs-probe: missing argument {i}; see the operations in the source");
            std::process::exit(2)
        })
    };
    let op = arg(0);
    let result: std::io::Result<String> = match op {
        "read" => fs::read_to_string(arg(1)).map(|s| format!("read {} bytes: {}", s.len(), s.trim_end())),
        "write" => fs::write(arg(1), arg(2)).map(|()| format!("wrote {}", arg(1))),
        "append" => OpenOptions::new()
            .append(true)
            .open(arg(1))
            .and_then(|mut f| f.write_all(arg(2).as_bytes()))
            .map(|()| format!("appended to {}", arg(1))),
        "create" => OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(arg(1))
            .map(|_| format!("created {}", arg(1))),
        "truncate" => OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(arg(1))
            .map(|_| format!("truncated {}", arg(1))),
        "list" => fs::read_dir(arg(1)).and_then(|entries| {
            let mut names = entries
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<std::io::Result<Vec<_>>>()?;
            names.sort();
            Ok(format!("entries: {}", names.join(",")))
        }),
        "mkdir" => fs::create_dir(arg(1)).map(|()| format!("made {}", arg(1))),
        "rmdir" => fs::remove_dir(arg(1)).map(|()| format!("removed {}", arg(1))),
        "unlink" => fs::remove_file(arg(1)).map(|()| format!("unlinked {}", arg(1))),
        "rename" => fs::rename(arg(1), arg(2)).map(|()| format!("renamed {} to {}", arg(1), arg(2))),
        "link" => fs::hard_link(arg(1), arg(2)).map(|()| format!("linked {} to {}", arg(2), arg(1))),
        "set-times" => fs::File::open(arg(1))
            .and_then(|f| f.set_modified(std::time::SystemTime::UNIX_EPOCH))
            .map(|()| format!("set times of {}", arg(1))),
        other => {
            eprintln!("fs-probe: unknown operation {other:?}");
            std::process::exit(2)
        }
    };
    match result {
        Ok(message) => println!("ok: {message}"),
        Err(error) => println!("denied: {:?}: {error}", error.kind()),
    }
}
