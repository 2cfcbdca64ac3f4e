//! A WASI 0.3 command (`wasi:cli/run@0.3.0`) for membrane's tests: each scenario, named by
//! the first argument, uses one WASI 0.3 interface and prints what it saw, so a test can
//! tell what the membrane let through. Every effect goes through the 0.3 API (streams for
//! stdio and files, async functions for the filesystem and sockets), never std's 0.2 one.

wit_bindgen::generate!({
    path: "../../wit/p3",
    world: "membrane:p3-probe/probe",
    generate_all,
});

use exports::wasi::cli::run::Guest;
use wasi::cli::{environment, exit, stdin, stdout};
use wasi::filesystem::preopens;
use wasi::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};
use wasi::sockets::types::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, TcpSocket, UdpSocket};

struct Probe;

export!(Probe);

impl Guest for Probe {
    async fn run() -> Result<(), ()> {
        let args = environment::get_arguments();
        let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
        match arg(1).as_str() {
            "hello" => print(format!("hello from p3; args: {}\n", args[1..].join(" "))).await,
            "env" => {
                let name = arg(2);
                let value = environment::get_environment().into_iter().find(|(k, _)| *k == name);
                print(match value {
                    Some((_, v)) => format!("{name}={v}\n"),
                    None => format!("{name} unset\n"),
                })
                .await
            }
            "fail" => return Err(()),
            "exit-err" => exit::exit(Err(())),
            "exit-code" => exit::exit_with_code(arg(2).parse().unwrap_or(255)),
            "fs" => print(format!("{}\n", files(&arg(2), &arg(3)).await)).await,
            "connect" => print(format!("{}\n", connect(&arg(2)).await)).await,
            "stdin" => {
                let (data, _done) = stdin::read_via_stream();
                let bytes = data.collect().await;
                print(format!("stdin: {}\n", String::from_utf8_lossy(&bytes))).await
            }
            "udp" => print(match UdpSocket::create(IpAddressFamily::Ipv4) {
                Ok(_) => "ok created\n".to_string(),
                Err(e) => format!("error create {e:?}\n"),
            })
            .await,
            "sockets" => print(format!("{}\n", sockets(arg(2).parse().unwrap_or(1)))).await,
            "spin" => spin(),
            "recurse" => print(format!("depth {}\n", descend(0))).await,
            "alloc" => {
                let mib: usize = arg(2).parse().unwrap_or(1);
                let block = vec![1u8; mib << 20];
                print(format!("allocated {} MiB\n", block.iter().map(|b| *b as usize).sum::<usize>() >> 20)).await
            }
            other => {
                print(format!("unknown scenario {other:?}\n")).await;
                return Err(());
            }
        }
        Ok(())
    }
}

/// Writes `text` to stdout through a `stream<u8>`, as WASI 0.3 does all output.
async fn print(text: String) {
    let (mut tx, rx) = wit_stream::new::<u8>();
    let written = stdout::write_via_stream(rx).into_future();
    let writer = async move {
        tx.write_all(text.into_bytes()).await;
        drop(tx);
    };
    let (result, ()) = futures::join!(written, writer);
    result.expect("stdout accepts the text");
}

/// Runs file operation `op` on `path` ("/dir/file") inside the preopened directory it
/// starts with, and says what happened: `ok ...` or `error <code>`.
async fn files(op: &str, path: &str) -> String {
    let Some((dir, name)) = preopened(path) else {
        return format!("error no preopened directory holds {path}");
    };
    let result = match op {
        "read" => read(&dir, &name).await,
        "write" => open(&dir, &name, OpenFlags::empty(), DescriptorFlags::WRITE).await.map(|_| "opened".into()),
        "create" => write_new(&dir, &name).await,
        "truncate" => open(&dir, &name, OpenFlags::TRUNCATE, DescriptorFlags::WRITE).await.map(|_| "truncated".into()),
        "set-size" => match open(&dir, &name, OpenFlags::empty(), DescriptorFlags::READ).await {
            Ok(file) => file.set_size(0).await.map(|()| "resized".into()).map_err(|e| format!("{e:?}")),
            Err(e) => Err(e),
        },
        "rename" => dir.rename_at(name.clone(), &dir, format!("{name}.renamed")).await.map(|()| "renamed".into()).map_err(|e| format!("{e:?}")),
        "unlink" => dir.unlink_file_at(name.clone()).await.map(|()| "unlinked".into()).map_err(|e| format!("{e:?}")),
        "mkdir" => dir.create_directory_at(name.clone()).await.map(|()| "created".into()).map_err(|e| format!("{e:?}")),
        other => Err(format!("unknown file operation {other:?}")),
    };
    match result {
        Ok(what) => format!("ok {what}"),
        Err(code) => format!("error {code}"),
    }
}

/// The preopened directory `path` starts with, and the rest of `path`.
fn preopened(path: &str) -> Option<(Descriptor, String)> {
    preopens::get_directories().into_iter().find_map(|(dir, guest)| {
        let rest = path.strip_prefix(guest.trim_end_matches('/'))?.strip_prefix('/')?;
        Some((dir, rest.to_string()))
    })
}

async fn open(dir: &Descriptor, name: &str, open: OpenFlags, flags: DescriptorFlags) -> Result<Descriptor, String> {
    dir.open_at(PathFlags::empty(), name.to_string(), open, flags).await.map_err(|e| format!("{e:?}"))
}

async fn read(dir: &Descriptor, name: &str) -> Result<String, String> {
    let file = open(dir, name, OpenFlags::empty(), DescriptorFlags::READ).await?;
    let (data, done) = file.read_via_stream(0);
    let bytes = data.collect().await;
    done.await.map_err(|e| format!("{e:?}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Creates `name` (failing if it exists) and writes a line into it through a stream.
async fn write_new(dir: &Descriptor, name: &str) -> Result<String, String> {
    let file = open(dir, name, OpenFlags::CREATE | OpenFlags::EXCLUSIVE, DescriptorFlags::WRITE).await?;
    let (mut tx, rx) = wit_stream::new::<u8>();
    let written = file.write_via_stream(rx, 0).into_future();
    let writer = async move {
        tx.write_all(b"written by p3-probe\n".to_vec()).await;
        drop(tx);
    };
    let (result, ()) = futures::join!(written, writer);
    result.map(|()| "written".into()).map_err(|e| format!("{e:?}"))
}

/// Opens a TCP connection to `addr` ("a.b.c.d:port").
async fn connect(addr: &str) -> String {
    let Some((ip, port)) = addr.rsplit_once(':') else { return format!("error bad address {addr}") };
    let octets: Vec<u8> = ip.split('.').filter_map(|o| o.parse().ok()).collect();
    let (Ok(port), &[a, b, c, d]) = (port.parse::<u16>(), &octets[..]) else {
        return format!("error bad address {addr}");
    };
    let socket = match TcpSocket::create(IpAddressFamily::Ipv4) {
        Ok(socket) => socket,
        Err(e) => return format!("error create {e:?}"),
    };
    let remote = IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address: (a, b, c, d) });
    match socket.connect(remote).await {
        Ok(()) => "ok connected".into(),
        Err(e) => format!("error connect {e:?}"),
    }
}

/// Creates up to `n` TCP sockets, holding them all, and says how many it got.
fn sockets(n: usize) -> String {
    let mut held = Vec::new();
    while held.len() < n {
        match TcpSocket::create(IpAddressFamily::Ipv4) {
            Ok(socket) => held.push(socket),
            Err(e) => return format!("created {} then error {e:?}", held.len()),
        }
    }
    format!("created {}", held.len())
}

/// Recurses without end; the host's stack limit stops it.
fn descend(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 16]);
    descend(frame[depth as usize % 16] + 1) + 1
}

/// Burns CPU until the host stops it; the loop never calls the host.
fn spin() -> ! {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}
