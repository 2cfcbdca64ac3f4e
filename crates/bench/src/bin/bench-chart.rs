//! Draws a benchmark's results as an SVG bar chart.
//!
//!   bench-chart RESULTS.tsv CHART.svg
//!
//! RESULTS.tsv: `# title: ...`, `# unit: ...` and optionally `# log` (a logarithmic axis for
//! figures that span orders of magnitude), then one `label<TAB>value` line per bar. Bars
//! whose label contains "membrane" are drawn in one colour, the peers in another.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

struct Results {
    title: String,
    unit: String,
    log: bool,
    bars: Vec<(String, f64)>,
}

fn parse(text: &str) -> anyhow::Result<Results> {
    let mut results = Results { title: String::new(), unit: String::new(), log: false, bars: Vec::new() };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(title) = line.strip_prefix("# title:") {
            results.title = title.trim().to_string();
        } else if let Some(unit) = line.strip_prefix("# unit:") {
            results.unit = unit.trim().to_string();
        } else if line.trim() == "# log" {
            results.log = true;
        } else if !line.starts_with('#') {
            let (label, value) =
                line.split_once('\t').ok_or_else(|| anyhow::anyhow!("line `{line}`: expected `label<TAB>value`"))?;
            let value: f64 =
                value.trim().parse().map_err(|_| anyhow::anyhow!("line `{line}`: value is not a number"))?;
            results.bars.push((label.to_string(), value));
        }
    }
    anyhow::ensure!(!results.bars.is_empty(), "no `label<TAB>value` lines");
    Ok(results)
}

fn draw(results: &Results, out: &str) -> anyhow::Result<()> {
    let n = results.bars.len();
    let root = SVGBackend::new(out, (960, 90 + 34 * n as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = results.bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let min = results.bars.iter().map(|b| b.1).filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            results.bars.get(*i).map(|b| b.0.clone()).unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    };
    let membrane = RGBColor(0x1f, 0x77, 0xb4);
    let peer = RGBColor(0xb0, 0xb0, 0xb0);
    let bar_color = |l: &str| if l.contains("membrane") { membrane } else { peer };
    let value_text = |v: f64| if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.3}") };
    let mut builder = ChartBuilder::on(&root);
    builder.caption(&results.title, ("sans-serif", 20)).margin(12).x_label_area_size(40).y_label_area_size(330);
    if results.log {
        let low = min / 2.0;
        let mut chart = builder.build_cartesian_2d((low..max * 4.0).log_scale(), (0..n).into_segmented())?;
        chart.configure_mesh().y_labels(n).y_label_formatter(&label).x_desc(&results.unit).disable_y_mesh().draw()?;
        for (i, (l, v)) in results.bars.iter().enumerate() {
            let mut bar = Rectangle::new(
                [(low, SegmentValue::Exact(i)), (*v, SegmentValue::Exact(i + 1))],
                bar_color(l).filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            chart.draw_series([bar])?;
            chart.draw_series([Text::new(
                value_text(*v),
                (*v * 1.05, SegmentValue::CenterOf(i)),
                ("sans-serif", 13),
            )])?;
        }
    } else {
        let mut chart = builder.build_cartesian_2d(0.0..max * 1.15, (0..n).into_segmented())?;
        chart.configure_mesh().y_labels(n).y_label_formatter(&label).x_desc(&results.unit).disable_y_mesh().draw()?;
        for (i, (l, v)) in results.bars.iter().enumerate() {
            let mut bar = Rectangle::new(
                [(0.0, SegmentValue::Exact(i)), (*v, SegmentValue::Exact(i + 1))],
                bar_color(l).filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            chart.draw_series([bar])?;
            chart.draw_series([Text::new(
                value_text(*v),
                (*v + max * 0.01, SegmentValue::CenterOf(i)),
                ("sans-serif", 13),
            )])?;
        }
    }
    root.present()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = args.as_slice() else { anyhow::bail!("usage: bench-chart RESULTS.tsv CHART.svg") };
    let text = std::fs::read_to_string(input).map_err(|e| anyhow::anyhow!("reading {input}: {e}"))?;
    let results = parse(&text).map_err(|e| anyhow::anyhow!("{input}: {e}"))?;
    draw(&results, output)
}
