//! A WASI 0.2 provider of the synchronous `words` interface, for membrane's tests of a
//! WASI 0.3 consumer (guests/p3-streams) calling a WASI 0.2 component through a link.

wit_bindgen::generate!({
    path: "../../wit/p3",
    world: "membrane:p3-probe/words-provider",
    generate_all,
});

struct Words;

export!(Words);

impl exports::membrane::p3_probe::words::Guest for Words {
    fn count_words(text: String) -> u32 {
        // Counted differently from the WASI 0.3 provider, so a test can tell who answered.
        text.split(' ').filter(|w| !w.is_empty()).count() as u32 + 1000
    }
}
