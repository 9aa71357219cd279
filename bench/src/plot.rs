//! A hand-written SVG of the latency percentile distributions: one panel
//! per (kind, size), x = percentile on the usual HdrHistogram log scale
//! (0, 90, 99, 99.9 … %), y = latency on a log scale, floors dashed.

use std::fmt::Write as _;

use super::report::Report;
use super::row::Row;
use super::scenario::Metric;
use super::units::ns;

const W: f64 = 1180.0;
const PANEL_H: f64 = 340.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 420.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 44.0;
const COLORS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22",
];

struct Series<'a> {
    row: &'a Row,
    /// (log10(1/(1-q)), ns)
    points: Vec<(f64, f64)>,
}

fn series(row: &Row) -> Option<Series<'_>> {
    let h = row.merged.as_ref()?;
    if h.is_empty() {
        return None;
    }
    let xmax = (h.len() as f64).log10().max(1.0);
    let mut points = Vec::new();
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let x = if q >= 1.0 {
            xmax
        } else {
            (1.0 / (1.0 - q)).log10().min(xmax)
        };
        let y = (v.value_iterated_to() as f64 / row.div).max(1.0);
        points.push((x, y));
    }
    Some(Series { row, points })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Panels: ping-pong one-way per size, then streaming latency per size.
/// Size-independent floors (cache line, futex) appear in every ping-pong
/// panel.
fn panels(report: &Report) -> Vec<(String, Vec<&Row>)> {
    let mut out = Vec::new();
    for (metric, title) in [
        (Metric::PingPong, "ping-pong, one-way (RTT/2)"),
        (Metric::Latency, "streaming latency, publish → receive"),
    ] {
        let rows: Vec<&Row> = report
            .rows
            .iter()
            .filter(|r| r.metric == metric && r.merged.is_some())
            .collect();
        let mut sizes: Vec<usize> = rows.iter().filter_map(|r| r.size).collect();
        sizes.sort_unstable();
        sizes.dedup();
        if sizes.is_empty() && !rows.is_empty() {
            out.push((title.to_string(), rows));
            continue;
        }
        for s in sizes {
            let members: Vec<&Row> = rows
                .iter()
                .copied()
                .filter(|r| r.size.map_or(true, |rs| rs == s))
                .collect();
            out.push((format!("{title}, {s} B"), members));
        }
    }
    out
}

/// Label of the x grid line `k` (x = log10(1/(1-q))).
fn pct_label(k: u32) -> String {
    match k {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        k => format!("99.{}%", "9".repeat(k as usize - 2)),
    }
}

/// Renders the SVG.
pub fn render(report: &Report) -> String {
    let panels = panels(report);
    let height = TOP + panels.len().max(1) as f64 * PANEL_H + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        esc(&format!(
            "ringbus bench — {} — CPUs {:?}",
            report.machine.cpu_model, report.plan.cpus
        ))
    );
    if panels.is_empty() {
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="60">no latency figures in this run</text>"#
        );
    }
    for (i, (title, rows)) in panels.iter().enumerate() {
        panel(&mut s, TOP + i as f64 * PANEL_H, title, rows);
    }
    s.push_str("</svg>\n");
    s
}

fn panel(s: &mut String, y0: f64, title: &str, rows: &[&Row]) {
    let series: Vec<Series<'_>> = rows.iter().filter_map(|r| series(r)).collect();
    let (px0, px1) = (LEFT, W - RIGHT);
    let (py0, py1) = (y0 + 24.0, y0 + PANEL_H - BOTTOM);
    let xmax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(2.0f64, f64::max)
        .ceil();
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold((f64::MAX, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let ylo = lo.min(hi).log10().floor();
    let yhi = (hi.log10().ceil()).max(ylo + 1.0);
    let fx = |x: f64| px0 + (x / xmax) * (px1 - px0);
    let fy = |v: f64| py1 - ((v.log10() - ylo) / (yhi - ylo)) * (py1 - py0);

    let _ = writeln!(
        s,
        r#"<text x="{px0}" y="{}" font-size="13" font-weight="bold">{}</text>"#,
        y0 + 16.0,
        esc(title)
    );
    let _ = writeln!(
        s,
        r##"<rect x="{px0}" y="{py0}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        px1 - px0,
        py1 - py0
    );
    // Vertical grid: 0 %, 90 %, 99 %, ...
    for k in 0..=(xmax as u32) {
        let x = fx(f64::from(k));
        let label = pct_label(k);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{py0}" x2="{x:.1}" y2="{py1}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"##,
            py1 + 16.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        (px0 + px1) / 2.0,
        py1 + 34.0
    );
    // Horizontal grid: decades, with 2× and 5× minor lines.
    let mut d = ylo as i32;
    while f64::from(d) <= yhi {
        for (m, major) in [(1.0, true), (2.0, false), (5.0, false)] {
            let v = m * 10f64.powi(d);
            if v.log10() > yhi + 1e-9 {
                continue;
            }
            let y = fy(v);
            let stroke = if major { "#ccc" } else { "#eee" };
            let _ = writeln!(
                s,
                r#"<line x1="{px0}" y1="{y:.1}" x2="{px1}" y2="{y:.1}" stroke="{stroke}"/>"#
            );
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                px0 - 4.0,
                y + 4.0,
                ns(v)
            );
        }
        d += 1;
    }
    for (i, se) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let dash = if se.row.scenario.is_floor() {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let pts: Vec<String> = se
            .points
            .iter()
            .map(|&(x, v)| format!("{:.1},{:.1}", fx(x), fy(v)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.8"{dash} points="{}"/>"#,
            pts.join(" ")
        );
        let ly = py0 + 8.0 + i as f64 * 17.0;
        let lx = px1 + 14.0;
        let name = match se.row.size {
            Some(sz) if !se.row.name.contains("B") => format!("{} ({sz} B)", se.row.name),
            _ => se.row.name.clone(),
        };
        let p50 = se.row.latency.map(|l| ns(l.p50)).unwrap_or_default();
        let p999 = se.row.latency.map(|l| ns(l.p99_9)).unwrap_or_default();
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}" font-size="11">{} — p50 {}, p99.9 {}</text>"#,
            lx + 22.0,
            lx + 28.0,
            ly + 4.0,
            esc(&name),
            p50,
            p999
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels() {
        let labels: Vec<String> = (0..5).map(pct_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }
}
