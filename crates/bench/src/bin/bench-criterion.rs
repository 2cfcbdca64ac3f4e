//! Turns a criterion group's results into `label<TAB>value` lines (median, in the unit
//! asked for) for `bench-chart` and the tables in BENCHMARKS.md.
//!
//!   bench-criterion CRITERION_DIR GROUP [ns|us|ms]
//!
//! Benchmarks are listed in the order criterion ran them (oldest result first).

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, group) = match args.as_slice() {
        [_, dir, group, ..] => (std::path::Path::new(dir).join(group), group),
        _ => anyhow::bail!("usage: bench-criterion CRITERION_DIR GROUP [ns|us|ms]"),
    };
    let scale = match args.get(3).map(String::as_str) {
        None | Some("ns") => 1.0,
        Some("us") => 1e3,
        Some("ms") => 1e6,
        Some(other) => anyhow::bail!("unit `{other}`: use ns, us or ms"),
    };
    let mut rows = Vec::new();
    for entry in
        std::fs::read_dir(&dir).map_err(|e| anyhow::anyhow!("{}: {e}; run the benchmark first", dir.display()))?
    {
        let bench = entry?.path().join("new");
        let (Ok(meta), Ok(estimates)) = (
            std::fs::read_to_string(bench.join("benchmark.json")),
            std::fs::read_to_string(bench.join("estimates.json")),
        ) else {
            continue;
        };
        let meta: serde_json::Value = serde_json::from_str(&meta)?;
        let estimates: serde_json::Value = serde_json::from_str(&estimates)?;
        let label = meta["function_id"].as_str().unwrap_or_default().to_string();
        let label = match meta["value_str"].as_str() {
            Some(value) => format!("{label} {value}"),
            None => label,
        };
        let median = estimates["median"]["point_estimate"].as_f64().unwrap_or(f64::NAN) / scale;
        let modified = std::fs::metadata(bench.join("estimates.json"))?.modified()?;
        rows.push((modified, label, median));
    }
    anyhow::ensure!(!rows.is_empty(), "{}: no results; run the benchmark first", dir.display());
    rows.sort_by_key(|r| r.0);
    for (_, label, median) in rows {
        println!("{label}\t{median:.3}");
    }
    let _ = group;
    Ok(())
}
