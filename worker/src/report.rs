//! Human and machine readable devnet output: per-window tables, the final summary,
//! JSON and an SVG loss plot.

use serde::Serialize;
use std::fmt::Write as _;

/// One miner's figures for one window.
#[derive(Debug, Clone, Serialize)]
pub struct MinerRow {
    pub uid: u16,
    pub behaviour: String,
    /// Mean inner-loop training loss this window (NaN when the miner did not train).
    pub train_loss: f64,
    /// Whether the miner's replica equals the validator's after the outer step.
    pub in_sync: bool,
    pub wire_bytes: usize,
    pub compression_ratio: f64,
    pub score: f64,
    pub weight: f32,
    pub in_peer_list: bool,
    pub verdict: String,
    /// Share of the window the miner spent computing its upload (NaN without a report).
    pub utilisation: f64,
    /// Processes the miner trained with (0 without a report).
    pub ranks: usize,
    /// Seconds from the window's first block to the start of the miner's training (NaN
    /// without a report).
    pub train_start_secs: f64,
    /// Share of the window the miner could have trained: its training time plus what was
    /// left until the deadline, at most 1 (NaN without a report).
    pub attainable_utilisation: f64,
}

/// Everything that happened in one window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    pub window: u64,
    pub block: u64,
    /// Held-out loss of the shared model after this window's outer step.
    pub eval_loss: f64,
    pub aggregated_peers: Vec<u16>,
    pub weights_set: bool,
    pub miners: Vec<MinerRow>,
    pub seconds: f64,
    /// Gradients the validator decoded and measured (or found to be copies) this window.
    pub decoded: usize,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct DevnetReport {
    pub initial_eval_loss: f64,
    pub windows: Vec<WindowReport>,
    /// Final on-chain weights per uid.
    pub final_weights: Vec<(u16, f32)>,
    /// Final on-chain incentive per uid.
    pub final_incentive: Vec<(u16, f64)>,
    pub gradients_on_wire: usize,
    pub gradients_decoded: usize,
}

impl DevnetReport {
    /// Held-out loss after the last window.
    pub fn final_eval_loss(&self) -> f64 {
        self.windows
            .last()
            .map_or(self.initial_eval_loss, |w| w.eval_loss)
    }
}

/// Formats one window as a fixed-width table.
pub fn window_table(report: &WindowReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "window {:>3}  block {:>5}  eval loss {:.4}  aggregated {:?}{}  ({:.1} s)",
        report.window,
        report.block,
        report.eval_loss,
        report.aggregated_peers,
        if report.weights_set {
            "  weights set"
        } else {
            ""
        },
        report.seconds
    );
    let _ = writeln!(
        out,
        "  {:>4} {:<9} {:>10} {:>5} {:>9} {:>7} {:>5} {:>8} {:>7} {:>5}  verdict",
        "uid", "role", "train", "sync", "bytes", "ratio", "util", "score", "weight", "list"
    );
    for row in &report.miners {
        let _ = writeln!(
            out,
            "  {:>4} {:<9} {:>10.4} {:>5} {:>9} {:>6.1}x {:>4.0}% {:>8.4} {:>7.4} {:>5}  {}",
            row.uid,
            row.behaviour,
            row.train_loss,
            if row.in_sync { "yes" } else { "NO" },
            row.wire_bytes,
            row.compression_ratio,
            100.0 * row.utilisation,
            row.score,
            row.weight,
            if row.in_peer_list { "yes" } else { "-" },
            row.verdict
        );
    }
    out
}

/// Formats the closing summary.
pub fn summary(report: &DevnetReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== devnet summary ==");
    let _ = writeln!(
        out,
        "eval loss {:.4} -> {:.4} over {} windows",
        report.initial_eval_loss,
        report.final_eval_loss(),
        report.windows.len()
    );
    let _ = writeln!(
        out,
        "gradients on the wire: {}, decoded: {}",
        report.gradients_on_wire, report.gradients_decoded
    );
    let utilisation: Vec<f64> = report
        .windows
        .iter()
        .flat_map(|w| w.miners.iter().map(|m| m.utilisation))
        .filter(|u| u.is_finite())
        .collect();
    if !utilisation.is_empty() {
        let mean = utilisation.iter().sum::<f64>() / utilisation.len() as f64;
        let min = utilisation.iter().copied().fold(f64::INFINITY, f64::min);
        let _ = writeln!(
            out,
            "miner compute utilisation (compute time / window): mean {:.1}%, min {:.1}%",
            100.0 * mean,
            100.0 * min
        );
    }
    let figures = |of: fn(&MinerRow) -> f64| -> Vec<f64> {
        report
            .windows
            .iter()
            .flat_map(|w| w.miners.iter().map(of))
            .filter(|v| v.is_finite())
            .collect()
    };
    let (starts, attainable) = (
        figures(|m| m.train_start_secs),
        figures(|m| m.attainable_utilisation),
    );
    if !starts.is_empty() {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let _ = writeln!(
            out,
            "training started {:.2} s into the window (mean); attainable utilisation \
             ((compute + headroom to the deadline) / window): mean {:.1}%",
            mean(&starts),
            100.0 * mean(&attainable)
        );
    }
    let _ = writeln!(out, "final weights (chain):");
    for (uid, w) in &report.final_weights {
        let incentive = report
            .final_incentive
            .iter()
            .find(|(u, _)| u == uid)
            .map_or(0.0, |(_, i)| *i);
        let behaviour = report
            .windows
            .last()
            .and_then(|w| w.miners.iter().find(|m| m.uid == *uid))
            .map_or("-", |m| m.behaviour.as_str());
        let _ = writeln!(
            out,
            "  uid {uid:>3} {behaviour:<9} weight {w:.4}  incentive {incentive:.4}"
        );
    }
    out
}

/// Renders the held-out loss per window as a small standalone SVG line chart.
pub fn loss_svg(report: &DevnetReport) -> String {
    let (width, height, pad) = (640.0_f64, 360.0_f64, 48.0_f64);
    let mut points = vec![(0.0, report.initial_eval_loss)];
    points.extend(
        report
            .windows
            .iter()
            .enumerate()
            .map(|(i, w)| ((i + 1) as f64, w.eval_loss)),
    );
    let max_x = points.len().saturating_sub(1).max(1) as f64;
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, y)| {
            (lo.min(*y), hi.max(*y))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let to_xy = |(x, y): (f64, f64)| {
        (
            pad + x / max_x * (width - 2.0 * pad),
            height - pad - (y - lo) / span * (height - 2.0 * pad),
        )
    };
    let path: Vec<String> = points
        .iter()
        .map(|p| {
            let (x, y) = to_xy(*p);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{pad}" y="24">held-out loss per window</text>"#
    );
    let _ = writeln!(
        svg,
        r#"<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="black"/>"#,
        b = height - pad,
        r = width - pad
    );
    let _ = writeln!(
        svg,
        r#"<text x="4" y="{pad}">{hi:.3}</text><text x="4" y="{b}">{lo:.3}</text><text x="{r}" y="{t}">window {max_x}</text>"#,
        b = height - pad,
        r = width - pad - 60.0,
        t = height - pad + 20.0
    );
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="steelblue" stroke-width="2" points="{}"/>"#,
        path.join(" ")
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(losses: &[f64]) -> DevnetReport {
        DevnetReport {
            initial_eval_loss: 5.0,
            windows: losses
                .iter()
                .enumerate()
                .map(|(i, l)| WindowReport {
                    window: i as u64,
                    block: i as u64 * 10,
                    eval_loss: *l,
                    aggregated_peers: vec![1, 2],
                    weights_set: i % 2 == 1,
                    miners: vec![MinerRow {
                        uid: 1,
                        behaviour: "honest".into(),
                        train_loss: *l,
                        in_sync: true,
                        wire_bytes: 1000,
                        compression_ratio: 150.0,
                        score: 0.5,
                        weight: 1.0,
                        in_peer_list: true,
                        verdict: "ok".into(),
                        utilisation: 0.25,
                        ranks: 1,
                        train_start_secs: 0.5,
                        attainable_utilisation: 0.9,
                    }],
                    seconds: 1.0,
                    decoded: 1,
                })
                .collect(),
            final_weights: vec![(1, 1.0)],
            final_incentive: vec![(1, 1.0)],
            gradients_on_wire: 2,
            gradients_decoded: 2,
        }
    }

    #[test]
    fn summary_reports_first_and_last_loss() {
        let text = summary(&report(&[4.0, 3.5]));
        assert!(text.contains("5.0000 -> 3.5000 over 2 windows"), "{text}");
        assert!(text.contains("uid   1 honest"), "{text}");
        assert!(text.contains("mean 25.0%, min 25.0%"), "{text}");
    }

    #[test]
    fn table_has_a_row_per_miner() {
        let r = report(&[4.0]);
        let table = window_table(&r.windows[0]);
        assert_eq!(table.lines().count(), 3, "{table}");
        assert!(table.contains("150.0x"));
    }

    #[test]
    fn svg_spans_all_points() {
        let svg = loss_svg(&report(&[4.0, 3.0, 2.0]));
        let points = svg
            .lines()
            .find(|l| l.starts_with("<polyline"))
            .unwrap()
            .matches(',')
            .count();
        assert_eq!(points, 4);
        assert!(svg.contains("5.000") && svg.contains("2.000"));
    }
}
