//! Recurses without bound; the host's stack limit must stop it.

// The recursion is the point: only the host's stack limit ends it.
#[allow(unconditional_recursion)]
#[inline(never)]
fn descend(depth: u64, pad: &mut [u64; 16]) -> u64 {
    pad[(depth % 16) as usize] = depth;
    let mut next = *pad;
    descend(std::hint::black_box(depth + 1), &mut next) + next[0]
}

fn main() {
    println!("descending");
    let mut pad = [0u64; 16];
    println!("{}", descend(0, &mut pad));
}
