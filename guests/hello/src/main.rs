//! A well-behaved command: greets, shows the args and environment it was given, and
//! exits with the code named by `--exit N` (0 by default). `--echo-stdin` prints what it
//! reads from standard input.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    println!("hello from inside a membrane");
    println!("args: {:?}", &args[1..]);
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.sort();
    for (name, value) in &env {
        println!("env: {name}={value}");
    }
    if env.is_empty() {
        println!("env: (none)");
    }
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        if arg == "--echo-stdin" {
            let mut input = String::new();
            let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut input);
            match input.trim_end() {
                "" => println!("stdin: (empty)"),
                text => println!("stdin: {text}"),
            }
        }
        if arg == "--exit" {
            let code: i32 = iter.next().and_then(|c| c.parse().ok()).unwrap_or(1);
            eprintln!("exiting with {code}");
            std::process::exit(code);
        }
    }
}
