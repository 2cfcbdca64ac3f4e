//! Calls back into whoever links `callback`: with `reentrant`, the call comes back to the
//! component that called in, A -> B -> A.

wit_bindgen::generate!({ path: "../../wit/test", world: "relay-provider" });

struct Relay;

impl exports::membrane::test::relay::Guest for Relay {
    fn call_back() -> String {
        format!("relayed: {}", membrane::test::callback::ping())
    }
}

export!(Relay);
