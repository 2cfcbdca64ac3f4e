//! Panics: Rust's panic prints its message to stderr and aborts with `unreachable`.

#[inline(never)]
fn check_invariant(value: u32) {
    if std::hint::black_box(value) != 42 {
        panic!("invariant violated: expected 42, got {value}");
    }
}

fn main() {
    println!("about to break an invariant");
    check_invariant(7);
}
