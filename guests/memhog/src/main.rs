//! Grows memory 1 MiB at a time, touching every page, until it has held the number of
//! MiB given as its first argument (unbounded when none is given).

fn main() {
    let stop_at: Option<usize> = std::env::args().nth(1).and_then(|a| a.parse().ok());
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        if stop_at.is_some_and(|n| held.len() >= n) {
            println!("held {} MiB, stopping", held.len());
            return;
        }
        held.push(vec![0xA5; 1 << 20]);
        if held.len() % 16 == 0 {
            println!("holding {} MiB", held.len());
        }
    }
}
