//! Async functions, streams and futures across a `[[link]]`: guests/p3-streams calls
//! guests/p3-transform, each in its own store, and the host forwards every stream between
//! them. Mixed apps: a WASI 0.2 consumer of a WASI 0.3 provider and the reverse.

use crate::util::{Outcome, TestApp, manifest, membrane};
use std::fs;
use std::process::Stdio;
use std::time::Duration;

const APP_CHECK: i32 = 79;
const BAD_MANIFEST: i32 = 78;
const TRANSFORM: &str = "membrane:p3-probe/transform";
const WORDS: &str = "membrane:p3-probe/words";

/// The streams consumer linked to the transform provider for both interfaces, with
/// `provider` settings and `link` settings given as TOML lines.
fn streams_app(provider: &str, link: &str) -> TestApp {
    TestApp::new(&manifest(
        "p3-streams",
        &[("p3-streams", ""), ("p3-transform", provider)],
        &[("p3-streams", TRANSFORM, "p3-transform", link), ("p3-streams", WORDS, "p3-transform", "")],
    ))
}

/// `membrane run` of `app` with `args`, and the peak resident memory of the membrane
/// process while it ran (kB), sampled from /proc until it exits.
fn run_with_peak(app: &TestApp, args: &[&str]) -> (Outcome, u64) {
    let manifest = app.manifest();
    let mut child = membrane()
        .args(["run", manifest.to_str().unwrap(), "--"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Ok(text) = fs::read_to_string(&status)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            peak = line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap().max(peak);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    let outcome = Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (outcome, peak)
}

#[test]
fn a_64_mib_stream_crosses_a_link_intact_with_bounded_host_memory() {
    let app = streams_app("", "");
    let (small, small_peak) = run_with_peak(&app, &["intact", "1"]);
    small.assert_code(0).assert_stdout_has("received 1048576 bytes; intact: true");
    let (large, large_peak) = run_with_peak(&app, &["intact", "64"]);
    large.assert_code(0).assert_stdout_has("received 67108864 bytes; intact: true");
    // Both ways chunk by chunk: 64 MiB more through the link costs the host far less
    // than the stream (its channels hold a few chunks, the link's budget caps the rest).
    let grown = large_peak.saturating_sub(small_peak);
    assert!(grown < 24 * 1024, "the host grew by {grown} kB for a 64 MiB stream ({small_peak} -> {large_peak} kB)");
}

#[test]
fn a_future_and_an_async_function_without_streams_cross_a_link() {
    let app = streams_app("", "");
    app.run(&["measure", "3"]).assert_code(0).assert_stdout_has("measured 3145728 bytes");
    app.run(&["reverse", "membrane"]).assert_code(0).assert_stdout_has("enarbmem");
}

#[test]
fn a_consumer_that_drops_its_stream_stops_the_provider_and_the_link_answers_next() {
    // A singleton provider: were it left writing to a reader that is gone, the next call
    // would wait behind it forever.
    let app = streams_app("instances = \"singleton\"", "timeout = \"20s\"");
    app.run(&["cancel"])
        .assert_code(0)
        .assert_stdout_has("cancelled after 65536 bytes; the writer stopped after")
        .assert_stdout_has("then: cba");
    assert!(!app.audit().iter().any(|e| e["event"] == "trap"), "{:?}", app.audit());
}

#[test]
fn a_future_whose_provider_traps_before_writing_it_fails_its_reader_not_the_host() {
    let app = streams_app("", "");
    // The provider answers with the future, then traps before it writes it (an empty input).
    let out = app.run(&["measure", "0"]);
    out.assert_code(80)
        .assert_stderr_has("the component across the link that returned this future stopped before it wrote it");
    let audit = app.audit();
    assert!(audit.iter().any(|e| e["event"] == "trap" && e["component"] == "p3-transform"), "{audit:?}");
    // The next run of the app is served as ever.
    app.run(&["measure", "1"]).assert_code(0).assert_stdout_has("measured 1048576 bytes");
}

#[test]
fn a_per_call_provider_that_stalls_after_its_consumer_walked_away_gives_its_instance_up() {
    // The provider stalls after its first chunk and never learns that its reader is gone;
    // its call ends when the consumer holds nothing of it, not at the link's timeout.
    let app = streams_app("", "timeout = \"20s\"");
    app.run(&["walk-away"]).assert_code(0).assert_stdout_has("walked away after 65536 bytes; then: cba");
    assert!(!app.audit().iter().any(|e| e["event"] == "trap"), "{:?}", app.audit());
}

#[test]
fn a_provider_that_traps_mid_stream_ends_the_consumers_stream_and_is_not_retried() {
    for provider in ["", "instances = \"singleton\"", "instances = \"pool:2\""] {
        let app = streams_app(provider, "on_trap = \"retry:2\"");
        let out = app.run(&["misbehave", "trap-after:1048576", "8"]);
        // The consumer's stream ends where the provider stopped; the consumer itself runs
        // on, and its next call reaches a provider that works again.
        out.assert_code(0).assert_stdout_has("then: cba");
        let received: u64 = out.stdout.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!((1 << 20..8 << 20).contains(&received), "{}", out.stdout);
        let audit = app.audit();
        assert!(
            audit.iter().any(|e| e["event"] == "trap" && e["component"] == "p3-transform"),
            "{provider}: {audit:?}"
        );
        // Bytes already handed over cannot be sent again: no retry.
        assert!(!audit.iter().any(|e| e["event"] == "retry"), "{provider}: {audit:?}");
    }
}

#[test]
fn a_provider_that_stalls_mid_stream_is_stopped_by_the_links_timeout() {
    for provider in ["", "instances = \"singleton\"", "instances = \"pool:2\""] {
        let app = streams_app(provider, "timeout = \"1s\"");
        let out = app.run(&["misbehave", "stall-after:1048576", "8"]);
        out.assert_code(0).assert_stdout_has("then: cba");
        let received: u64 = out.stdout.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!((1 << 20..8 << 20).contains(&received), "{}", out.stdout);
        let audit = app.audit();
        assert!(audit.iter().any(|e| e["event"] == "trap" && e["what"] == "timeout"), "{provider}: {audit:?}");
        // The timeout stops the call, not a singleton serving others beside it: the next
        // call is answered by the same instance.
        assert!(!audit.iter().any(|e| e["event"] == "restart"), "{provider}: {audit:?}");
    }
}

#[test]
fn a_long_lived_provider_that_computes_forever_mid_stream_is_stopped_at_the_links_timeout() {
    // Its event loop is stuck in the guest, so the deadline cannot stop the call alone:
    // the instance goes, and the next call is served by a new one.
    for provider in ["instances = \"singleton\"", "instances = \"pool:2\""] {
        let app = streams_app(provider, "timeout = \"1s\"");
        let out = app.run(&["misbehave", "spin-after:1048576", "8"]);
        out.assert_code(0).assert_stdout_has("then: cba");
        let audit = app.audit();
        assert!(
            audit.iter().any(|e| e["event"] == "trap" && e["component"] == "p3-transform" && e["what"] == "timeout"),
            "{provider}: {audit:?}"
        );
    }
}

#[test]
fn a_long_lived_provider_answers_other_calls_while_a_consumer_holds_its_stream() {
    // Were a singleton or the one instance of a pool to take one call at a time, the held
    // stream would keep the others waiting until the link's timeout discarded it.
    for provider in ["instances = \"singleton\"", "instances = \"pool:1\""] {
        let app = streams_app(provider, "timeout = \"30s\"");
        app.run(&["hold"])
            .assert_code(0)
            .assert_stdout_has("held after 65536 bytes; meanwhile: cba, 3 words; in all: 4194304 bytes");
        let audit = app.audit();
        assert!(!audit.iter().any(|e| e["event"] == "trap" || e["event"] == "restart"), "{provider}: {audit:?}");
    }
}

#[test]
fn a_thousand_concurrent_streams_cross_one_link() {
    for provider in ["instances = \"singleton\"", "instances = \"pool:8\""] {
        let app = streams_app(provider, "");
        app.run(&["many", "1000"]).assert_code(0).assert_stdout_has("1000 of 1000 intact");
    }
}

#[test]
fn a_singleton_provider_takes_more_calls_than_it_has_room_for_in_turn() {
    // Room for 5 calls at once (a sixteenth of 80 table entries): 100 at once wait their
    // turn rather than fill the instance's table and fail every call in it.
    let app = streams_app("instances = \"singleton\"\nlimits = { host_resources = 80 }", "");
    app.run(&["many", "100"]).assert_code(0).assert_stdout_has("100 of 100 intact");
    assert!(!app.audit().iter().any(|e| e["event"] == "trap"), "{:?}", app.audit());
}

#[test]
fn wasi_p2_and_p3_components_call_each_others_synchronous_functions() {
    // Each in a store of its own, and with the provider in its consumer's store.
    for isolation in ["", "isolation = \"component\""] {
        // A WASI 0.2 command calls the WASI 0.3 provider.
        let p2_to_p3 = TestApp::new(&manifest(
            "words-consumer",
            &[("words-consumer", ""), ("p3-transform", "")],
            &[("words-consumer", WORDS, "p3-transform", isolation)],
        ));
        p2_to_p3.run(&["one", "two", "three"]).assert_code(0).assert_stdout_has("words: 3");
        // A WASI 0.3 command calls a WASI 0.2 provider (which counts from 1000).
        let p3_to_p2 = TestApp::new(&manifest(
            "p3-streams",
            &[("p3-streams", ""), ("p3-transform", ""), ("words-provider", "")],
            &[("p3-streams", TRANSFORM, "p3-transform", ""), ("p3-streams", WORDS, "words-provider", isolation)],
        ));
        p3_to_p2.run(&["words", "one", "two"]).assert_code(0).assert_stdout_has("words: 1002");
    }
}

#[test]
fn check_explains_an_async_sync_mismatch_and_a_stream_it_cannot_forward() {
    let dir = tempfile::tempdir().unwrap();
    // A consumer that imports `reverse` as a synchronous function.
    let sync_reverse = dir.path().join("sync-reverse.wat");
    fs::write(
        &sync_reverse,
        format!(
            r#"(component (import "{TRANSFORM}" (instance
                (export "reverse" (func (param "text" string) (result string))))))"#
        ),
    )
    .unwrap();
    let app = TestApp::new(&manifest(
        "consumer",
        &[("consumer", &format!("source = {:?}", sync_reverse.to_str().unwrap())), ("p3-transform", "")],
        &[("consumer", TRANSFORM, "p3-transform", "")],
    ));
    app.check(&[])
        .assert_code(APP_CHECK)
        .assert_stderr_has("reverse: func(text: string) -> string")
        .assert_stderr_has("reverse: async func(text: string) -> string");

    // A consumer that would send words where the provider reads bytes.
    let words_upper = dir.path().join("words-upper.wat");
    fs::write(
        &words_upper,
        format!(
            r#"(component (import "{TRANSFORM}" (instance
                (export "upper" (func async (param "mode" string) (param "input" (stream u32)) (result (stream u8)))))))"#
        ),
    )
    .unwrap();
    let app = TestApp::new(&manifest(
        "consumer",
        &[("consumer", &format!("source = {:?}", words_upper.to_str().unwrap())), ("p3-transform", "")],
        &[("consumer", TRANSFORM, "p3-transform", "")],
    ));
    app.check(&[])
        .assert_code(APP_CHECK)
        .assert_stderr_has("upper: async func(mode: string, input: stream<u32>) -> stream<u8>")
        .assert_stderr_has("upper: async func(mode: string, input: stream<u8>) -> stream<u8>");

    // A stream of tuples, on both sides: the types match, and the link says why it
    // cannot carry it.
    let pairs = "membrane:p3-probe/pairs";
    let consumer = dir.path().join("pairs-consumer.wat");
    fs::write(
        &consumer,
        format!(
            r#"(component (import "{pairs}" (instance (export "take" (func (param "input" (stream (tuple u8 u8))))))))"#
        ),
    )
    .unwrap();
    let provider = dir.path().join("pairs-provider.wat");
    fs::write(
        &provider,
        format!(
            r#"(component
                (core module $m (func (export "take") (param i32)))
                (core instance $i (instantiate $m))
                (type $pairs (stream (tuple u8 u8)))
                (func $take (param "input" $pairs) (canon lift (core func $i "take")))
                (instance $e (export "take" (func $take)))
                (export "{pairs}" (instance $e)))"#
        ),
    )
    .unwrap();
    let app = TestApp::new(&manifest(
        "consumer",
        &[
            ("consumer", &format!("source = {:?}", consumer.to_str().unwrap())),
            ("provider", &format!("source = {:?}", provider.to_str().unwrap())),
        ],
        &[("consumer", pairs, "provider", "")],
    ));
    app.check(&[])
        .assert_code(APP_CHECK)
        .assert_stderr_has("take cannot cross the link: a stream of tuples is not forwarded between stores");
}

#[test]
fn streams_nobody_reads_slow_a_link_down_but_never_stop_its_other_streams() {
    // 100 unread streams hold more than the link's whole budget; the one that is read
    // still gets through, a chunk at a time if need be (a timeout ends the test's wait
    // should it not).
    let app = streams_app("", "timeout = \"30s\"");
    app.run(&["starve", "100"])
        .assert_code(0)
        .assert_stdout_has("with 100 unread streams: received 4194304 bytes; intact: true");
}

#[test]
fn a_links_stream_budget_is_set_in_the_manifest_and_checked() {
    // The smallest budget there is: one chunk in flight for the whole link at a time.
    let app = streams_app("", "stream_budget = \"64KiB\"");
    app.run(&["intact", "4"]).assert_code(0).assert_stdout_has("received 4194304 bytes; intact: true");
    app.run(&["many", "20"]).assert_code(0).assert_stdout_has("20 of 20 intact");
    let app = streams_app("", "stream_budget = \"1KiB\"");
    app.check(&[])
        .assert_code(BAD_MANIFEST)
        .assert_stderr_has("link[0].stream_budget: 1024 bytes is outside 64 KiB (one chunk of a stream) to 2 GiB")
        .assert_stderr_has("write stream_budget = \"16MiB\"");
}

#[test]
fn an_async_method_of_a_providers_resource_takes_a_stream_across_a_link() {
    // The tally lives in the provider's singleton; the consumer holds a handle to it and
    // feeds it two streams through its async method, each call carrying its stream between
    // the stores and finding the same tally.
    let app = TestApp::new(&manifest(
        "p3-tally",
        &[("p3-tally", ""), ("p3-transform", "instances = \"singleton\"")],
        &[("p3-tally", "membrane:p3-probe/tallies", "p3-transform", "")],
    ));
    app.run(&[]).assert_code(0).assert_stdout_has("tally: 1000 then 1234");
    assert!(!app.audit().iter().any(|e| e["event"] == "trap"), "{:?}", app.audit());
}
