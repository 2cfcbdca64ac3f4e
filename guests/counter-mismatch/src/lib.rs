//! Exports `membrane:test/counter` with the wrong function type (`increment` returns a
//! string, not a u64): a build that must never be swapped in for the provider.

wit_bindgen::generate!({
    inline: "
        package membrane:test@0.1.0;
        interface counter {
            increment: func() -> string;
        }
        world counter-mismatch {
            export counter;
        }
    ",
});

struct Mismatch;

impl exports::membrane::test::counter::Guest for Mismatch {
    fn increment() -> String {
        "one".into()
    }
}

export!(Mismatch);
