//! A command that calls a relay which calls it back: A -> B -> A.

wit_bindgen::generate!({ path: "../../wit/test", world: "reentrant", generate_all });

struct Callback;

impl exports::membrane::test::callback::Guest for Callback {
    fn ping() -> String {
        "pong from reentrant".to_string()
    }
}

export!(Callback);

fn main() {
    println!("calling the relay");
    println!("{}", membrane::test::relay::call_back());
}
