//! Tries one network operation and prints `ok: …` or `denied: <kind>: <message>`:
//! `connect HOST:PORT` (TCP), `lookup NAME` (DNS through wasi:sockets/ip-name-lookup),
//! `tcp-echo ADDR` (listen on ADDR, print `listening on ADDR`, echo one connection),
//! `accept-all ADDR` (listen, then accept and hold connections until an accept fails),
//! `udp-ask PEER` (send `ping` from an ephemeral port, print the reply), `udp-bind ADDR`,
//! `create tcp|udp` (one socket, with its WASI error code) and `flood tcp|udp` (sockets
//! until the host refuses one).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use wasip2::sockets::network::{ErrorCode, IpAddressFamily};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (op, target) = match args.as_slice() {
        [op, target] => (op.as_str(), target.as_str()),
        _ => {
            eprintln!("usage: net-probe connect|lookup|tcp-echo|udp-ask|udp-bind|create|flood TARGET");
            std::process::exit(2)
        }
    };
    let result = match op {
        "connect" => TcpStream::connect(target)
            .map(|s| format!("connected to {}", s.peer_addr().map(|a| a.to_string()).unwrap_or_default())),
        "lookup" => (target, 0u16).to_socket_addrs().map(|addrs| {
            let ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
            format!("resolved {target} to {}", ips.join(","))
        }),
        "tcp-echo" => tcp_echo(target),
        "accept-all" => accept_all(target),
        "udp-ask" => udp_ask(target),
        "udp-bind" => UdpSocket::bind(target).map(|s| format!("bound {}", s.local_addr().unwrap())),
        "create" => Ok(match create(target) {
            Ok(()) => format!("created a {target} socket"),
            Err(code) => format!("refused: {}", code.name()),
        }),
        "flood" => Ok(flood(target)),
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

/// Listens on `addr`, says where, and echoes one connection back until it closes.
fn tcp_echo(addr: &str) -> std::io::Result<String> {
    let listener = TcpListener::bind(addr)?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let (mut conn, peer) = listener.accept()?;
    let mut buf = [0u8; 1024];
    let mut echoed = 0;
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        conn.write_all(&buf[..n])?;
        echoed += n;
    }
    Ok(format!("echoed {echoed} bytes to {peer}"))
}

/// Listens on `addr`, says where, and accepts connections, holding each, until an accept
/// fails.
fn accept_all(addr: &str) -> std::io::Result<String> {
    let listener = TcpListener::bind(addr)?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let mut held = Vec::new();
    loop {
        match listener.accept() {
            Ok((conn, _)) => held.push(conn),
            Err(e) => return Ok(format!("accepted {}; then {e}", held.len())),
        }
    }
}

/// Sends `ping` to `peer` and waits for one reply.
fn udp_ask(peer: &str) -> std::io::Result<String> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.send_to(b"ping", peer)?;
    let mut buf = [0u8; 1024];
    let (n, from) = socket.recv_from(&mut buf)?;
    Ok(format!("{} from {from}", String::from_utf8_lossy(&buf[..n])))
}

fn create(protocol: &str) -> Result<(), ErrorCode> {
    match protocol {
        "udp" => wasip2::sockets::udp_create_socket::create_udp_socket(IpAddressFamily::Ipv4).map(drop),
        _ => wasip2::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4).map(drop),
    }
}

/// Opens sockets of `protocol`, never closing them, until the host refuses one (or 5,000).
fn flood(protocol: &str) -> String {
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    let refused = loop {
        if tcp.len() + udp.len() == 5_000 {
            break "none".to_string();
        }
        let created = match protocol {
            "udp" => wasip2::sockets::udp_create_socket::create_udp_socket(IpAddressFamily::Ipv4).map(|s| udp.push(s)),
            _ => wasip2::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4).map(|s| tcp.push(s)),
        };
        if let Err(code) = created {
            break code.name().to_string();
        }
    };
    format!("created {} sockets; refused: {refused}", tcp.len() + udp.len())
}
