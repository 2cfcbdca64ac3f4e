//! Collecting a server's log while it runs, shared by the test binaries that start
//! `membrane serve`.

use std::io::Read;
use std::sync::{Arc, Mutex};

/// Reads `stream` on a thread of its own into the returned string until it closes. A
/// very long log keeps its start and its tail, which is what tests look for.
pub fn collect(mut stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut sink = sink.lock().unwrap();
            if sink.len() > 4 << 20 {
                sink.drain(..1 << 20);
            }
            sink.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    log
}
