//! The training curve as a self-contained SVG written by hand (no plotting crate): loss on
//! top, accuracy below, against the step. Per-step values are drawn thin (averaged into
//! at most `MAX_POINTS` buckets), epoch means bold, held-out results as dashed lines.
use std::fmt::Write;

#[derive(Debug, Clone, Default)]
pub struct Curve {
    pub title: String,
    /// Loss and accuracy of the steps' batches (before their update), step 1 first, one
    /// every `step_stride` steps (the server's history is downsampled on long runs).
    pub step_loss: Vec<f64>,
    pub step_accuracy: Vec<f64>,
    /// Steps between two points of `step_loss`; 0 is taken as 1.
    pub step_stride: u64,
    /// (last step of the epoch, mean loss, mean accuracy) per epoch.
    pub epochs: Vec<(u64, f64, f64)>,
    /// Held-out (loss, accuracy) after training, if there was a held-out set.
    pub held_out: Option<(f64, f64)>,
}

const WIDTH: f64 = 800.0;
const PANEL_HEIGHT: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 50.0;
const GAP: f64 = 60.0;
const MAX_POINTS: usize = 1000;
const STEP_COLOR: &str = "#9ecae1";
const EPOCH_COLOR: &str = "#08519c";
const HELD_OUT_COLOR: &str = "#d94801";

pub fn render(c: &Curve) -> String {
    let height = TOP + 2.0 * PANEL_HEIGHT + GAP + 50.0;
    let stride = c.step_stride.max(1);
    let steps = (c.step_loss.len() as u64 * stride).max(1) as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="24" font-size="15">{}</text>"#,
        escape(&c.title)
    );

    let loss_max = c
        .step_loss
        .iter()
        .chain(c.held_out.iter().map(|(l, _)| l))
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let loss_max = if loss_max > 0.0 { loss_max * 1.05 } else { 1.0 };
    let panels = [
        (
            "loss",
            TOP,
            loss_max,
            &c.step_loss,
            c.epochs.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(),
            c.held_out.map(|h| h.0),
        ),
        (
            "accuracy",
            TOP + PANEL_HEIGHT + GAP,
            1.0,
            &c.step_accuracy,
            c.epochs.iter().map(|e| (e.0, e.2)).collect(),
            c.held_out.map(|h| h.1),
        ),
    ];
    for (name, top, y_max, per_step, per_epoch, held_out) in panels {
        let frame = Frame { top, steps, y_max };
        frame.axes(&mut svg, name);
        let points: Vec<(f64, f64)> = buckets(per_step, stride);
        frame.polyline(&mut svg, &points, STEP_COLOR, 1.0);
        let epochs: Vec<(f64, f64)> = per_epoch.iter().map(|&(s, v)| (s as f64, v)).collect();
        frame.polyline(&mut svg, &epochs, EPOCH_COLOR, 2.0);
        let legend_x = WIDTH - RIGHT + 12.0;
        let mut legend = vec![
            (STEP_COLOR, "", "per step".to_string()),
            (EPOCH_COLOR, "", "epoch mean".to_string()),
        ];
        if let Some(v) = held_out.filter(|v| v.is_finite()) {
            let y = frame.y(v);
            let _ = writeln!(
                svg,
                r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{HELD_OUT_COLOR}" stroke-width="1.5" stroke-dasharray="6 4"/>"#,
                WIDTH - RIGHT
            );
            legend.push((HELD_OUT_COLOR, "6 4", format!("held-out {v:.4}")));
        }
        for (i, (color, dash, label)) in legend.iter().enumerate() {
            let y = top + 14.0 + 18.0 * i as f64;
            let _ = writeln!(
                svg,
                r#"<line x1="{legend_x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{}">{}</text>"#,
                legend_x + 20.0,
                legend_x + 26.0,
                y + 4.0,
                escape(label)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// One panel's coordinate system: x = step in [0, steps], y in [0, y_max].
struct Frame {
    top: f64,
    steps: f64,
    y_max: f64,
}

impl Frame {
    fn x(&self, step: f64) -> f64 {
        LEFT + (WIDTH - LEFT - RIGHT) * step / self.steps
    }

    fn y(&self, v: f64) -> f64 {
        let v = v.clamp(0.0, self.y_max);
        self.top + PANEL_HEIGHT * (1.0 - v / self.y_max)
    }

    fn axes(&self, svg: &mut String, name: &str) {
        let (x0, x1) = (LEFT, WIDTH - RIGHT);
        let (y0, y1) = (self.top, self.top + PANEL_HEIGHT);
        let _ = writeln!(
            svg,
            r##"<rect x="{x0}" y="{y0}" width="{}" height="{PANEL_HEIGHT}" fill="none" stroke="#444"/>"##,
            x1 - x0
        );
        let (y_ticks, decimals) = ticks(self.y_max);
        for t in y_ticks {
            let y = self.y(t);
            let _ = writeln!(
                svg,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{t:.decimals$}</text>"##,
                x0 - 6.0,
                y + 4.0,
            );
        }
        let (x_ticks, decimals) = ticks(self.steps);
        for t in x_ticks {
            let x = self.x(t);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{}" stroke="#444"/><text x="{x:.1}" y="{}" text-anchor="middle">{t:.decimals$}</text>"##,
                y1 + 5.0,
                y1 + 18.0,
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{name}</text><text x="{}" y="{}" text-anchor="middle">step</text>"#,
            x0 - 50.0,
            (y0 + y1) / 2.0,
            x0 - 50.0,
            (y0 + y1) / 2.0,
            (x0 + x1) / 2.0,
            y1 + 34.0
        );
    }

    fn polyline(&self, svg: &mut String, points: &[(f64, f64)], color: &str, width: f64) {
        let mut coords = String::new();
        for &(s, v) in points.iter().filter(|p| p.1.is_finite()) {
            let _ = write!(coords, "{:.1},{:.1} ", self.x(s), self.y(v));
        }
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="{width}" stroke-linejoin="round"/>"#,
            coords.trim_end()
        );
    }
}

/// Per-step values (one every `stride` steps) as (step, value), averaged over buckets
/// when there are many.
fn buckets(values: &[f64], stride: u64) -> Vec<(f64, f64)> {
    let size = values.len().div_ceil(MAX_POINTS).max(1);
    let stride = stride as f64;
    values
        .chunks(size)
        .enumerate()
        .map(|(i, chunk)| {
            let first_step = (i * size) as f64 * stride + 1.0;
            let mid = first_step + (chunk.len() - 1) as f64 * stride / 2.0;
            (mid, chunk.iter().sum::<f64>() / chunk.len() as f64)
        })
        .collect()
}

/// Round tick positions in [0, max]: steps of 1, 2 or 5 × 10^k, about five of them;
/// and how many decimals their labels need.
fn ticks(max: f64) -> (Vec<f64>, usize) {
    if !(max > 0.0 && max.is_finite()) {
        return (vec![0.0], 0);
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let ticks = (0..)
        .map(|i| i as f64 * step)
        .take_while(|&t| t <= max * (1.0 + 1e-9))
        .collect();
    (ticks, decimals)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        let (t, decimals) = ticks(1.0);
        assert_eq!((t.len(), decimals), (6, 1));
        assert!((t[5] - 1.0).abs() < 1e-12);
        assert_eq!(ticks(400.0), (vec![0.0, 100.0, 200.0, 300.0, 400.0], 0));
        assert_eq!(ticks(2.9).1, 0);
        assert_eq!(ticks(0.0), (vec![0.0], 0));
    }

    #[test]
    fn buckets_average() {
        assert_eq!(buckets(&[1.0, 3.0], 1), [(1.0, 1.0), (2.0, 3.0)]);
        assert_eq!(buckets(&[1.0, 3.0], 4), [(1.0, 1.0), (5.0, 3.0)]);
        let many: Vec<f64> = (0..2500).map(|i| i as f64).collect();
        let b = buckets(&many, 1);
        assert_eq!(b.len(), 834);
        assert_eq!(b[0], (2.0, 1.0));
    }

    #[test]
    fn renders_a_document() {
        let svg = render(&Curve {
            title: "a<b & c".into(),
            step_loss: vec![2.0, 1.0, 0.5],
            step_accuracy: vec![0.2, 0.6, 0.9],
            step_stride: 1,
            epochs: vec![(3, 1.1, 0.6)],
            held_out: Some((0.7, 0.8)),
        });
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a&lt;b &amp; c"));
        assert_eq!(svg.matches("<polyline").count(), 4);
    }
}
