//! Tries one network operation and prints `ok: …` or `denied: <kind>: <message>`:
//! `connect HOST:PORT` (TCP) or `lookup NAME` (DNS through wasi:sockets/ip-name-lookup).

use std::net::{TcpStream, ToSocketAddrs};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (op, target) = match args.as_slice() {
        [op, target] => (op.as_str(), target.as_str()),
        _ => {
            eprintln!("usage: net-probe connect HOST:PORT | lookup NAME");
            std::process::exit(2)
        }
    };
    let result = match op {
        "connect" => TcpStream::connect(target).map(|s| format!("connected to {}", s.peer_addr().map(|a| a.to_string()).unwrap_or_default())),
        "lookup" => (target, 0u16).to_socket_addrs().map(|addrs| {
            let ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
            format!("resolved {target} to {}", ips.join(","))
        }),
        other => {
            eprintln!("net-probe: unknown operation {other:?}");
            std::process::exit(2)
        }
    };
    match result {
        Ok(message) => println!("ok: {message}"),
        Err(error) => println!("denied: {:?}: {error}", error.kind()),
    }
}
