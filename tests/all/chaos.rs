use crate::util::{TestApp, caller_app, membrane_with};
use std::path::Path;

/// Its own status, apart from every other failure's (90 is a refused signature).
const REFUTED: i32 = 92;
const BAD_MANIFEST: i32 = 78;

fn docs_web() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/docs-web/membrane.toml").to_str().unwrap().to_string()
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/docs-web/chaos").join(name).to_str().unwrap().to_string()
}

#[test]
fn a_fallback_keeps_the_site_answering_while_the_renderer_traps() {
    let out = membrane_with(["chaos", &docs_web(), &example("renderer-traps.toml")]);
    out.assert_code(0)
        .assert_stdout_has("hypothesis: the site answers every request with 200")
        .assert_stdout_has("  200: 300\n")
        .assert_stdout_has("  component plain: restarted every 100ms (")
        .assert_stdout_has("  component hello: grants denied: env")
        .assert_stdout_has("verdict: the hypothesis holds (success 100.0% >= 100.0%)");
    // Traps were really injected, about 30% of the 150 renders.
    let line = out.stdout.lines().find(|l| l.starts_with("  link web -> fancy: traps with probability 0.3 (")).unwrap();
    let injected: u32 = line.split('(').nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!((20..=80).contains(&injected), "{line}");
    assert!(line.ends_with("of 150 calls)"), "{line}");
}

#[test]
fn added_latency_refutes_a_latency_hypothesis() {
    let out = membrane_with(["chaos", &docs_web(), &example("slow-renderer.toml")]);
    out.assert_code(REFUTED)
        .assert_stdout_has("  link web -> fancy: 200ms latency on every call")
        .assert_stdout_has("  200: 40\n")
        .assert_stdout_has("verdict: the hypothesis is refuted (p99 ");
}

#[test]
fn without_a_fallback_injected_traps_reach_the_entry_and_refute_the_hypothesis() {
    let app = TestApp::new(&caller_app("", ""));
    std::fs::write(
        app.path("experiment.toml"),
        r#"hypothesis = "the caller succeeds while its provider traps half the time"
[traffic]
requests = 40
concurrency = 2
args = ["ok"]

[[inject]]
link = "caller -> provider"
trap = 0.5

[expect]
success = 0.9
"#,
    )
    .unwrap();
    let out = membrane_with(["chaos", app.manifest().to_str().unwrap(), app.path("experiment.toml").to_str().unwrap()]);
    out.assert_code(REFUTED)
        .assert_stdout_has("traffic: 40 runs of the entry with args [\"ok\"], 2 at a time")
        .assert_stdout_has("  exit 0: ")
        .assert_stdout_has("verdict: the hypothesis is refuted (success ");
    // The same app with nothing injected: the baseline holds.
    std::fs::write(
        app.path("baseline.toml"),
        "hypothesis = \"the caller succeeds\"\n[traffic]\nrequests = 5\nargs = [\"ok\"]\n",
    )
    .unwrap();
    membrane_with(["chaos", app.manifest().to_str().unwrap(), app.path("baseline.toml").to_str().unwrap()])
        .assert_code(0)
        .assert_stdout_has("  nothing (a baseline run)")
        .assert_stdout_has("  exit 0: 5\n");
}

#[test]
fn an_experiment_naming_what_the_app_lacks_is_refused_with_the_fix() {
    let app = TestApp::new(&caller_app("", ""));
    for (experiment, error) in [
        (
            "hypothesis = \"h\"\n[traffic]\nargs = []\n[[inject]]\nlink = \"caller -> nobody\"\ntrap = 0.1\n",
            "inject[0].link: the app has no link caller -> nobody; use one of its links: caller -> provider",
        ),
        ("hypothesis = \"h\"\n[traffic]\npaths = [\"/\"]\n", "traffic.paths: the app"),
        (
            "hypothesis = \"h\"\n[traffic]\nargs = []\n[[inject]]\ncomponent = \"provider\"\ndeny = [\"root\"]\n",
            "inject[0].deny: \"root\" is not a grant; deny some of: dirs, env, allow_tcp, allow_tcp_bind, allow_udp, allow_udp_bind, allow_dns, stdin, outbound_http",
        ),
        (
            "hypothesis = \"h\"\n[traffic]\nargs = []\n[[inject]]\nlink = \"caller -> provider\"\ntrap = 2.0\n",
            "inject[0].trap: 2 is not a probability",
        ),
        ("hypothesis = \"h\"\n[traffic]\nargs = []\nchaos = true\n", "unknown field `chaos`"),
    ] {
        std::fs::write(app.path("experiment.toml"), experiment).unwrap();
        membrane_with(["chaos", app.manifest().to_str().unwrap(), app.path("experiment.toml").to_str().unwrap()])
            .assert_code(BAD_MANIFEST)
            .assert_stderr_has(error);
    }
}
