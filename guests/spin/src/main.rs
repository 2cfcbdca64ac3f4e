//! Never finishes: `spin` burns CPU in a tight loop; `spin sleep` blocks in a host call
//! (a monotonic-clock wait), so only a wall-clock limit can stop it.

fn main() {
    if std::env::args().nth(1).as_deref() == Some("sleep") {
        println!("sleeping");
        std::thread::sleep(std::time::Duration::from_secs(3600));
        return;
    }
    println!("spinning");
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}
