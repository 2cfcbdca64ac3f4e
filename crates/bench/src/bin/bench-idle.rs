//! A native process that does nothing: says it is ready, then waits for its standard input
//! to close. The density benchmark's native baseline.

use std::io::{Read, Write};

fn main() {
    let _ = std::io::stdout().write_all(b"r").and_then(|_| std::io::stdout().flush());
    let mut byte = [0u8; 1];
    let _ = std::io::stdin().read(&mut byte);
}
