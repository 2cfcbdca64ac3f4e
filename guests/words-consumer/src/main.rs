//! A WASI 0.2 command that calls the synchronous `words` interface of a WASI 0.3 provider
//! (guests/p3-transform) through a `[[link]]`: it prints the word count of its arguments.

wit_bindgen::generate!({
    path: "../../wit/p3",
    world: "membrane:p3-probe/words-consumer",
    generate_all,
});

fn main() {
    let text = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    println!("words: {}", membrane::p3_probe::words::count_words(&text));
}
