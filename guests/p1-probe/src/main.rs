//! A WASI preview 1 command (built for `wasm32-wasip1` as a core module, which membrane
//! adapts into a component). Does one thing named on the command line and prints one line,
//! `ok: …` or `denied: <error kind>: <message>`, exiting 0 when it was attempted.
//!
//! Operations: read PATH | write PATH TEXT | list PATH | env NAME | args

use std::fs;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str {
        args.get(i).map(String::as_str).unwrap_or_else(|| {
            eprintln!("p1-probe: missing argument {i}; see the operations in the source");
            std::process::exit(2)
        })
    };
    let result: std::io::Result<String> = match arg(0) {
        "read" => fs::read_to_string(arg(1)).map(|s| format!("read: {}", s.trim_end())),
        "write" => fs::write(arg(1), arg(2)).map(|()| format!("wrote {}", arg(1))),
        "list" => fs::read_dir(arg(1)).and_then(|entries| {
            let mut names = entries
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<std::io::Result<Vec<_>>>()?;
            names.sort();
            Ok(format!("entries: {}", names.join(",")))
        }),
        "env" => Ok(match std::env::var(arg(1)) {
            Ok(value) => format!("{}={value}", arg(1)),
            Err(_) => format!("{} unset; environment has {} variable(s)", arg(1), std::env::vars().count()),
        }),
        "args" => Ok(format!("args: {}", args[1..].join(" "))),
        other => {
            eprintln!("p1-probe: unknown operation {other:?}");
            std::process::exit(2)
        }
    };
    match result {
        Ok(message) => println!("ok: {message}"),
        Err(error) => println!("denied: {:?}: {error}", error.kind()),
    }
}
