use crate::served::{Served, hostile_app};

#[test]
fn cpu_stack_and_memory_attacks_fail_alone_while_the_neighbour_answers() {
    // 16 MiB, not more: touching a page can cost tens of microseconds on a busy virtual
    // machine, and the memory attack must reach its memory limit before its CPU budget.
    let app = hostile_app(r#"memory = "16MiB", cpu = "300ms", timeout = "1s""#);
    let server = Served::start(&[app.manifest().to_str().unwrap()]);
    // Each attack alone, the neighbour checked after each.
    for (attack, status) in [
        // An infinite loop: stopped by its CPU budget at an epoch tick.
        ("/evil/spin", 504),
        // A loop inside a blocking host call uses no CPU: only the wall clock ends it.
        ("/evil/block", 504),
        ("/evil/recurse", 500),
        // Overflows its shadow stack in linear memory: a trap, not a host crash.
        // Grows memory 1 MiB at a time until its 16 MiB are spent.
        ("/evil/grow", 500),
    ] {
        assert_eq!(server.get(attack).0, status, "{attack}; stderr:\n{}", server.stderr());
        server.assert_neighbour_answers();
    }
    for stopped in ["CPU time limit reached", "timed out", "out of bounds memory access", "memory limit reached"] {
        server.wait_for_log(stopped);
    }
    // All at once, several times over, with the neighbour asked in the middle of it.
    let before = server.rss_kib();
    std::thread::scope(|scope| {
        let attacks: Vec<_> = ["/evil/spin", "/evil/block", "/evil/recurse", "/evil/grow"]
            .iter()
            .cycle()
            .take(16)
            .map(|attack| scope.spawn(|| server.get(attack).0))
            .collect();
        for _ in 0..10 {
            server.assert_neighbour_answers();
        }
        for attack in attacks {
            assert!([500, 504].contains(&attack.join().unwrap()));
        }
    });
    server.assert_neighbour_answers();
    // Sixteen more faults, the memory of four of them 16 MiB each, are all given back.
    let after = server.rss_kib();
    assert!(after < before + 64 * 1024, "RSS grew from {before} KiB to {after} KiB");
}
