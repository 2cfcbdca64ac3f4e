//! The provider side of the typed-path tests: `shapes`, answering with what it was given.

wit_bindgen::generate!({ path: "../../wit/test", world: "shapes-provider" });

struct Provider;

fn hex<T: Copy>(items: &[T], bits: impl Fn(T) -> u64) -> String {
    items.iter().map(|x| format!("{:x}", bits(*x))).collect::<Vec<_>>().join(",")
}

impl exports::membrane::test::shapes::Guest for Provider {
    fn nothing() {}
    fn flag(x: bool) -> bool {
        x
    }
    fn byte(x: u8) -> u32 {
        x.into()
    }
    fn word(x: u32) -> u32 {
        x
    }
    fn signed(x: i32) -> i32 {
        x
    }
    fn long(x: u64) -> u64 {
        x
    }
    fn signed_long(x: i64) -> i64 {
        x
    }
    fn single(x: f32) -> f64 {
        x.into()
    }
    fn double(x: f64) -> f64 {
        x
    }
    fn letter(x: char) -> u32 {
        x.into()
    }
    fn text(x: String) -> String {
        x
    }
    fn bytes(x: Vec<u8>) -> Vec<u8> {
        x
    }
    fn words(x: Vec<u32>) -> String {
        hex(&x, u64::from)
    }
    fn doubles(x: Vec<f64>) -> String {
        hex(&x, f64::to_bits)
    }
    fn join(a: String, b: String) -> String {
        a + &b
    }
    fn append(mut a: Vec<u8>, b: Vec<u8>) -> Vec<u8> {
        a.extend(b);
        a
    }
    fn mix(a: u64, b: Vec<u8>) -> u64 {
        a.wrapping_add(b.len() as u64)
    }
    fn trap_on_zero(x: u32) -> u32 {
        assert!(x != 0, "trap-on-zero was given zero");
        x
    }
    fn row(x: (u32, String)) -> (u32, String) {
        x
    }
}

export!(Provider);
