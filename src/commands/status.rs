//! `membrane status`: the components of a running app and their health, from its admin API.

use crate::admin_client::AdminFlags;
use clap::Parser;
use serde_json::Value;

/// Show the components of a running `membrane serve` (revision, instances, traps,
/// restarts, memory) and its links (calls, errors, latency, circuit).
#[derive(Parser, Debug)]
pub struct StatusCommand {
    #[command(flatten)]
    pub admin: AdminFlags,
    /// Print the raw JSON of /api/app and /api/stats.
    #[arg(long)]
    pub json: bool,
}

impl StatusCommand {
    pub fn execute(self) -> anyhow::Result<u8> {
        let app = self.admin.get("/api/app")?;
        let stats = self.admin.get("/api/stats")?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "app": app, "stats": stats }))?);
            return Ok(0);
        }
        print!("{}", render(&app, &stats));
        Ok(0)
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The status table. Health: `ok`, `trapping` (traps since start), `failed` (a singleton
/// past its restart budget shows as traps with restarts at the budget).
fn render(app: &Value, stats: &Value) -> String {
    let mut out = format!("app {} (version {})\n\n", text(&app["name"]), text(&app["generation"]));
    let mut rows = vec![
        ["COMPONENT", "INSTANCES", "REV", "DIGEST", "LIVE", "TRAPS", "RESTARTS", "MEMORY", "HEALTH"]
            .map(String::from)
            .to_vec(),
    ];
    if let Some(components) = app["components"].as_object() {
        for (name, c) in components {
            let s = &stats["components"][name];
            let traps = s["traps"].as_u64().unwrap_or(0);
            let digest = text(&c["digest"]);
            rows.push(vec![
                name.clone(),
                text(&c["instances"]),
                text(&c["revision"]),
                digest.chars().skip(7).take(12).collect(),
                text(&s["live"]),
                text(&s["traps"]),
                text(&s["restarts"]),
                format!("{} KiB", s["memory_bytes"].as_u64().unwrap_or(0) / 1024),
                if traps == 0 { "ok".into() } else { "trapping".into() },
            ]);
        }
    }
    out.push_str(&table(&rows));
    if let Some(links) = stats["links"].as_array().filter(|l| !l.is_empty()) {
        out.push('\n');
        let mut rows =
            vec![["LINK", "CALLS", "ERRORS", "RETRIES", "FALLBACKS", "P99", "CIRCUIT"].map(String::from).to_vec()];
        for l in links {
            rows.push(vec![
                format!("{} -> {} ({})", text(&l["from"]), text(&l["to"]), text(&l["import"])),
                text(&l["calls"]),
                text(&l["errors"]),
                text(&l["retries"]),
                text(&l["fallbacks"]),
                format!("{}us", l["p99_ns"].as_u64().unwrap_or(0) / 1000),
                text(&l["circuit"]),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}

fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
