//! The consumer side of the typed-path tests: each `shapes-driver` function forwards its
//! arguments through the link to `shapes` and returns the answer.

wit_bindgen::generate!({ path: "../../wit/test", world: "shapes-consumer" });

use membrane::test::shapes as s;

struct Consumer;

impl exports::membrane::test::shapes_driver::Guest for Consumer {
    fn nothing() {
        s::nothing()
    }
    fn flag(x: bool) -> bool {
        s::flag(x)
    }
    fn byte(x: u8) -> u32 {
        s::byte(x)
    }
    fn word(x: u32) -> u32 {
        s::word(x)
    }
    fn signed(x: i32) -> i32 {
        s::signed(x)
    }
    fn long(x: u64) -> u64 {
        s::long(x)
    }
    fn signed_long(x: i64) -> i64 {
        s::signed_long(x)
    }
    fn single(x: f32) -> f64 {
        s::single(x)
    }
    fn double(x: f64) -> f64 {
        s::double(x)
    }
    fn letter(x: char) -> u32 {
        s::letter(x)
    }
    fn text(x: String) -> String {
        s::text(&x)
    }
    fn bytes(x: Vec<u8>) -> Vec<u8> {
        s::bytes(&x)
    }
    fn words(x: Vec<u32>) -> String {
        s::words(&x)
    }
    fn doubles(x: Vec<f64>) -> String {
        s::doubles(&x)
    }
    fn join(a: String, b: String) -> String {
        s::join(&a, &b)
    }
    fn append(a: Vec<u8>, b: Vec<u8>) -> Vec<u8> {
        s::append(&a, &b)
    }
    fn mix(a: u64, b: Vec<u8>) -> u64 {
        s::mix(a, &b)
    }
    fn trap_on_zero(x: u32) -> u32 {
        s::trap_on_zero(x)
    }
    fn row(x: (u32, String)) -> (u32, String) {
        s::row((x.0, &x.1))
    }
}

export!(Consumer);
