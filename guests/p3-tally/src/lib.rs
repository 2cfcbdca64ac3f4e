//! A WASI 0.3 command that feeds two streams to a tally resource of guests/p3-transform
//! across a `[[link]]`: the resource lives in the provider's instance, the consumer holds a
//! handle to it, and each call of its async method carries a stream between the stores.

wit_bindgen::generate!({
    path: "../../wit/p3",
    world: "membrane:p3-probe/tally-consumer",
    generate_all,
});

use exports::wasi::cli::run::Guest;
use membrane::p3_probe::tallies::Tally;
use wasi::cli::stdout;

struct Consumer;

export!(Consumer);

impl Guest for Consumer {
    async fn run() -> Result<(), ()> {
        let tally = Tally::new();
        let mut totals = Vec::new();
        for len in [1000usize, 234] {
            let (mut tx, rx) = wit_stream::new::<u8>();
            let feeding = tally.feed(rx);
            let writing = async move {
                tx.write_all(vec![7; len]).await;
            };
            let (total, ()) = futures::join!(feeding, writing);
            totals.push(total.to_string());
        }
        drop(tally);
        print(format!("tally: {}\n", totals.join(" then "))).await;
        Ok(())
    }
}

async fn print(text: String) {
    let (mut tx, rx) = wit_stream::new::<u8>();
    let written = stdout::write_via_stream(rx).into_future();
    let writer = async move {
        tx.write_all(text.into_bytes()).await;
        drop(tx);
    };
    let (result, ()) = futures::join!(written, writer);
    result.expect("stdout accepts the text");
}
