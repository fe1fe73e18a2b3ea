//! The charts of `ladder compare`, as one self-contained SVG with two panels:
//!
//! - score against cost per million pages, one colour per start (a legend names them), one
//!   marker per stage (untuned ○, SFT ●, DPO ◆), an arrow from each model to the one trained
//!   from it (solid into DPO, dashed into SFT), error bars for the spread over seeds;
//! - the degeneration rate per start and stage, as bars with the same error bars.
//!
//! Axes are fitted to the data (error bars included) with round ticks ([`nice_axis`]). Text
//! never overlaps: every label's box is estimated from DejaVu Sans/Verdana advance widths,
//! which are wider than most sans-serif faces, and point labels are placed greedily in the
//! first free spot around their point ([`Placer`]). The tests render the SVG with resvg and
//! check the real text boxes (about 200 of this file's 700 lines).

use std::fmt::Write as _;

use crate::report::{CompareRow, Comparison};
use crate::schema::StageKind;
use crate::stats::Spread;

/// One colour per start (colour-blind-safe first four).
const PALETTE: [&str; 8] = ["#1f77b4", "#d95f02", "#2ca02c", "#7570b3", "#e7298a", "#8c564b", "#17becf", "#bcbd22"];
const FONT: &str = "DejaVu Sans, Verdana, sans-serif";
const MARKER_R: f64 = 6.0;

/// One model as the chart sees it.
#[derive(Clone, Debug)]
pub struct ChartRow {
    /// The legend entry (start, or run · start when several runs are compared).
    pub series: String,
    /// untuned, sft, dpo…
    pub stage: String,
    pub kind: Option<StageKind>,
    /// Index (in the same list) of the model this one was trained from.
    pub parent: Option<usize>,
    pub score: Option<Spread>,
    pub cost: Option<Spread>,
    pub degeneration: Option<Spread>,
}

/// The figure of a comparison.
pub fn figure(c: &Comparison) -> String {
    let multi = c.run_dirs.len() > 1;
    let rows: Vec<&CompareRow> = c.rows.iter().filter(|r| r.eval_stage.is_some()).collect();
    let chart_rows: Vec<ChartRow> = rows
        .iter()
        .map(|r| ChartRow {
            series: if multi { format!("{} · {}", r.run, r.start) } else { r.start.clone() },
            stage: r.stage_label().to_string(),
            kind: r.kind,
            parent: r.parent.as_ref().and_then(|p| rows.iter().position(|q| q.run == r.run && q.start == r.start && &q.stage == p)),
            score: r.score.clone(),
            cost: r.cost_per_million_pages.clone(),
            degeneration: r.degeneration_rate.clone(),
        })
        .collect();
    let seeds = match c.seeds.len() {
        0 | 1 => "one seed".to_string(),
        n => format!("mean and min–max over {n} seeds"),
    };
    render(&format!("Score, cost and degeneration per start and stage ({seeds})"), &chart_rows)
}

/// An axis-aligned box, `x0 < x1`, `y0 < y1` (SVG coordinates, y down).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl Rect {
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }

    fn inside(&self, o: &Rect) -> bool {
        self.x0 >= o.x0 && self.x1 <= o.x1 && self.y0 >= o.y0 && self.y1 <= o.y1
    }

    fn around(x: f64, y: f64, r: f64) -> Rect {
        Rect { x0: x - r, y0: y - r, x1: x + r, y1: y + r }
    }
}

/// Advance width of `text` at `size` px, in DejaVu Sans's metrics rounded up (Verdana's are
/// close; Arial's and Helvetica's narrower), so boxes are generous in any browser.
pub fn text_width(text: &str, size: f64, bold: bool) -> f64 {
    let em: f64 = text
        .chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '!' | '|' | '\'' | 'I' => 0.30,
            'f' | 't' | 'r' | ' ' | '-' | '(' | ')' | '[' | ']' | '/' | '·' => 0.42,
            'm' | 'w' | 'M' | 'W' | '%' => 1.0,
            '±' | '×' | '→' | '–' | '—' => 0.86,
            c if c.is_ascii_uppercase() => 0.76,
            c if c.is_ascii_digit() => 0.64,
            _ => 0.64,
        })
        .sum();
    em * size * if bold { 1.12 } else { 1.0 }
}

/// The box of a text drawn at baseline `(x, y)` with `anchor` start, middle or end.
pub fn text_box(text: &str, x: f64, y: f64, size: f64, bold: bool, anchor: &str) -> Rect {
    let w = text_width(text, size, bold);
    let x0 = match anchor {
        "middle" => x - w / 2.0,
        "end" => x - w,
        _ => x,
    };
    Rect { x0, y0: y - 0.95 * size, x1: x0 + w, y1: y + 0.26 * size }
}

/// A round-numbered axis covering `[lo, hi]`: (min, max, step), the step 1, 2 or 5 × 10ⁿ for
/// about `ticks` intervals; never below zero for data that is not.
pub fn nice_axis(lo: f64, hi: f64, ticks: usize) -> (f64, f64, f64) {
    let (mut lo, mut hi) = (lo.min(hi), lo.max(hi));
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0, 0.2);
    }
    if hi - lo < 1e-12 {
        let pad = (hi.abs() * 0.1).max(1e-3);
        (lo, hi) = (lo - pad, hi + pad);
    }
    let raw = (hi - lo) / ticks.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let step = mag * if f <= 1.0 { 1.0 } else if f <= 2.0 { 2.0 } else if f <= 5.0 { 5.0 } else { 10.0 };
    let min = (lo / step - 1e-9).floor() * step;
    let max = (hi / step + 1e-9).ceil() * step;
    (if lo >= 0.0 { min.max(0.0) } else { min }, max, step)
}

/// Tick values of a nice axis, printed with the step's decimals.
fn ticks(min: f64, max: f64, step: f64) -> Vec<(f64, String)> {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let n = ((max - min) / step).round() as usize;
    (0..=n).map(|i| min + i as f64 * step).map(|v| (v, format!("{:.decimals$}", v + 0.0))).collect()
}

/// Text for SVG and HTML: `&`, `<`, `>` and `"` as entities.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// SVG being written, with the boxes of the text it holds.
struct Canvas {
    svg: String,
    texts: Vec<Rect>,
}

impl Canvas {
    #[allow(clippy::too_many_arguments)]
    /// A y-axis title, rotated to read bottom to top, centred on `plot` at `x`.
    fn y_title(&mut self, id: &str, text: &str, x: f64, plot: &Rect) {
        let ymid = (plot.y0 + plot.y1) / 2.0;
        let _ = writeln!(
            self.svg,
            "<text id=\"{id}\" x=\"{x:.1}\" y=\"{ymid:.1}\" font-size=\"12\" text-anchor=\"middle\" fill=\"#222\" transform=\"rotate(-90 {x:.1} {ymid:.1})\">{text}</text>"
        );
    }

    fn text(&mut self, id: &str, text: &str, x: f64, y: f64, size: f64, bold: bool, anchor: &str, fill: &str) -> Rect {
        let weight = if bold { " font-weight=\"bold\"" } else { "" };
        let _ = writeln!(
            self.svg,
            "<text id=\"{id}\" x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\"{weight} text-anchor=\"{anchor}\" fill=\"{fill}\">{}</text>",
            escape(text)
        );
        let b = text_box(text, x, y, size, bold, anchor);
        self.texts.push(b);
        b
    }
}

/// Where a marker sits and how it looks.
#[derive(Clone, Copy, PartialEq)]
enum Marker {
    /// The untuned start: a hollow circle.
    Hollow,
    /// SFT (and anything else trained): a filled circle.
    Dot,
    /// DPO: a diamond.
    Diamond,
}

fn marker_of(kind: Option<StageKind>) -> Marker {
    match kind {
        None => Marker::Hollow,
        Some(StageKind::Dpo) => Marker::Diamond,
        Some(_) => Marker::Dot,
    }
}

fn draw_marker(svg: &mut String, id: &str, m: Marker, x: f64, y: f64, colour: &str) {
    let r = MARKER_R;
    let _ = match m {
        Marker::Hollow => writeln!(svg, "<circle id=\"{id}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{:.1}\" fill=\"white\" stroke=\"{colour}\" stroke-width=\"2.5\"/>", r - 1.0),
        Marker::Dot => writeln!(svg, "<circle id=\"{id}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r}\" fill=\"{colour}\" stroke=\"white\" stroke-width=\"1\"/>"),
        Marker::Diamond => {
            let d = r * 1.3;
            writeln!(
                svg,
                "<polygon id=\"{id}\" points=\"{x:.1},{:.1} {:.1},{y:.1} {x:.1},{:.1} {:.1},{y:.1}\" fill=\"{colour}\" stroke=\"white\" stroke-width=\"1\"/>",
                y - d,
                x + d,
                y + d,
                x - d
            )
        }
    };
}

/// Greedy label placement: the first spot, in rings of growing distance around a point, whose
/// box stays in the plot and clear of every placed label and every marker.
struct Placer {
    area: Rect,
    taken: Vec<Rect>,
}

impl Placer {
    /// The label's baseline origin (text-anchor start) and box; `None` when nothing is free.
    fn place(&mut self, text: &str, size: f64, px: f64, py: f64) -> Option<(f64, f64, Rect)> {
        let w = text_width(text, size, false);
        let (asc, desc) = (0.95 * size, 0.26 * size);
        for ring in 0..8 {
            let d = MARKER_R + 4.0 + ring as f64 * 9.0;
            // Right, left, above, below, then the diagonals, then the angles between.
            let dirs: [(f64, f64); 12] = [
                (1.0, 0.0),
                (-1.0, 0.0),
                (0.0, -1.0),
                (0.0, 1.0),
                (0.7, -0.7),
                (-0.7, -0.7),
                (0.7, 0.7),
                (-0.7, 0.7),
                (0.9, -0.45),
                (-0.9, -0.45),
                (0.9, 0.45),
                (-0.9, 0.45),
            ];
            for (dx, dy) in dirs {
                // The box's nearest edge sits `d` from the point in that direction.
                let cx = px + dx * (d + w / 2.0);
                let cy = py + dy * (d + (asc + desc) / 2.0);
                let b = Rect { x0: cx - w / 2.0, y0: cy - (asc + desc) / 2.0, x1: cx + w / 2.0, y1: cy + (asc + desc) / 2.0 };
                let pad = Rect { x0: b.x0 - 2.0, y0: b.y0 - 1.0, x1: b.x1 + 2.0, y1: b.y1 + 1.0 };
                if pad.inside(&self.area) && !self.taken.iter().any(|t| t.overlaps(&pad)) {
                    self.taken.push(pad);
                    return Some((b.x0, b.y1 - desc, b));
                }
            }
        }
        None
    }
}

/// Layout constants of the figure.
const PAD: f64 = 20.0;
const GAP: f64 = 36.0;
const SCATTER_W: f64 = 600.0;
const PANEL_H: f64 = 420.0;

/// The figure: a title, a legend, then the two panels side by side.
pub fn render(title: &str, rows: &[ChartRow]) -> String {
    let mut series: Vec<String> = Vec::new();
    for r in rows {
        if !series.contains(&r.series) {
            series.push(r.series.clone());
        }
    }
    let colour = |r: &ChartRow| PALETTE[series.iter().position(|s| *s == r.series).unwrap_or(0) % PALETTE.len()];
    let bars_w = bars_width(rows, &series);
    let width = PAD + SCATTER_W + GAP + bars_w + PAD;
    let mut c = Canvas { svg: String::new(), texts: Vec::new() };
    c.text("title", title, PAD, 30.0, 16.0, true, "start", "#222");
    // Legend: colours per start, then the marker per stage.
    let (mut x, mut y) = (PAD, 58.0);
    let mut entries: Vec<(Option<&str>, Option<Marker>, String)> = series.iter().map(|s| (Some(colour_of(&series, s)), None, s.clone())).collect();
    let stages_present = |m: Marker| rows.iter().any(|r| marker_of(r.kind) == m);
    for (m, name) in [(Marker::Hollow, "untuned"), (Marker::Dot, "SFT"), (Marker::Diamond, "DPO")] {
        if stages_present(m) {
            entries.push((None, Some(m), name.to_string()));
        }
    }
    for (i, (col, marker, name)) in entries.iter().enumerate() {
        let w = 18.0 + text_width(name, 12.0, false) + 18.0;
        if x + w > width - PAD {
            x = PAD;
            y += 22.0;
        }
        match (col, marker) {
            (Some(col), _) => {
                let _ = writeln!(c.svg, "<rect id=\"legend-swatch-{i}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{col}\"/>", y - 10.0);
            }
            (None, Some(m)) => draw_marker(&mut c.svg, &format!("legend-marker-{i}"), *m, x + 6.0, y - 4.0, "#555"),
            _ => {}
        }
        c.text(&format!("legend-{i}"), name, x + 18.0, y, 12.0, false, "start", "#222");
        x += w;
    }
    let top = y + 22.0;
    scatter(&mut c, rows, &colour, PAD, top);
    bars(&mut c, rows, &series, &colour, PAD + SCATTER_W + GAP, top, bars_w);
    let height = top + PANEL_H + PAD;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"{FONT}\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{}</svg>\n",
        c.svg
    )
}

fn colour_of(series: &[String], s: &str) -> &'static str {
    PALETTE[series.iter().position(|x| x == s).unwrap_or(0) % PALETTE.len()]
}

/// The spread's (min, max), or the mean twice.
fn range(s: &Spread) -> (f64, f64) {
    (s.min.min(s.mean), s.max.max(s.mean))
}

/// Score against cost per million pages.
fn scatter(c: &mut Canvas, rows: &[ChartRow], colour: &dyn Fn(&ChartRow) -> &'static str, x0: f64, y0: f64) {
    let plot = Rect { x0: x0 + 70.0, y0: y0 + 30.0, x1: x0 + SCATTER_W - 10.0, y1: y0 + PANEL_H - 52.0 };
    c.text("scatter-title", "Score against cost per million pages", x0, y0 + 14.0, 13.0, true, "start", "#222");
    let pts: Vec<(usize, &Spread, &Spread)> = rows.iter().enumerate().filter_map(|(i, r)| Some((i, r.cost.as_ref()?, r.score.as_ref()?))).collect();
    let (xl, xh) = pts.iter().map(|p| range(p.1)).fold((f64::INFINITY, f64::NEG_INFINITY), |a, b| (a.0.min(b.0), a.1.max(b.1)));
    let (yl, yh) = pts.iter().map(|p| range(p.2)).fold((f64::INFINITY, f64::NEG_INFINITY), |a, b| (a.0.min(b.0), a.1.max(b.1)));
    // A margin of a tenth of the range, so that points are not drawn on the axes.
    let padded = |lo: f64, hi: f64| {
        let m = (hi - lo).max(hi.abs() * 0.02) * 0.1;
        (lo - m, hi + m)
    };
    let (xmin, xmax, xstep) = if pts.is_empty() { (0.0, 1.0, 0.2) } else { let (a, b) = padded(xl, xh); nice_axis(a.max(0.0), b, 5) };
    let (ymin, ymax, ystep) = if pts.is_empty() { (0.0, 1.0, 0.2) } else { let (a, b) = padded(yl, yh); nice_axis(a.max(0.0), b, 5) };
    let sx = |v: f64| plot.x0 + (v - xmin) / (xmax - xmin) * (plot.x1 - plot.x0);
    let sy = |v: f64| plot.y1 - (v - ymin) / (ymax - ymin) * (plot.y1 - plot.y0);
    axes(c, "scatter", &plot, &ticks(xmin, xmax, xstep), &ticks(ymin, ymax, ystep), &sx, &sy);
    c.text("scatter-x-title", "cost per million pages (in price_per_hour's currency)", (plot.x0 + plot.x1) / 2.0, plot.y1 + 40.0, 12.0, false, "middle", "#222");
    c.y_title("scatter-y-title", "score (composite, 0–1)", x0 + 14.0, &plot);
    if pts.is_empty() {
        c.text("scatter-empty", "no model has both a score and a cost yet", (plot.x0 + plot.x1) / 2.0, (plot.y0 + plot.y1) / 2.0, 12.0, false, "middle", "#666");
        return;
    }
    let pos = |i: usize| -> Option<(f64, f64)> { pts.iter().find(|p| p.0 == i).map(|p| (sx(p.1.mean), sy(p.2.mean))) };
    // Error bars first, then the links, then the markers on top.
    for &(i, cost, score) in &pts {
        if cost.seeds < 2 {
            continue;
        }
        let (x, y) = (sx(cost.mean), sy(score.mean));
        let (xa, xb) = range(cost);
        let (ya, yb) = range(score);
        let col = colour(&rows[i]);
        let _ = writeln!(
            c.svg,
            "<path id=\"errorbar-{i}\" d=\"M{:.1},{y:.1}H{:.1}M{:.1},{:.1}v8M{:.1},{:.1}v8M{x:.1},{:.1}V{:.1}M{:.1},{:.1}h8M{:.1},{:.1}h8\" stroke=\"{col}\" stroke-opacity=\"0.55\" stroke-width=\"1.5\" fill=\"none\"/>",
            sx(xa), sx(xb), sx(xa), y - 4.0, sx(xb), y - 4.0, sy(ya), sy(yb), x - 4.0, sy(ya), x - 4.0, sy(yb)
        );
    }
    // Each arrow's course, sampled, for the labels to keep clear of.
    let mut courses: Vec<Vec<(f64, f64)>> = Vec::new();
    for &(i, ..) in &pts {
        let Some(p) = rows[i].parent else { continue };
        let (Some(a), Some(b)) = (pos(p), pos(i)) else { continue };
        let col = colour(&rows[i]);
        let dash = if rows[i].kind == Some(StageKind::Dpo) { "" } else { " stroke-dasharray=\"5 4\"" };
        let (course, head) = arrow_course(a, b, &plot);
        let d: String = match course.len() {
            2 => format!("M{:.1},{:.1}L{:.1},{:.1}", course[0].0, course[0].1, course[1].0, course[1].1),
            _ => format!(
                "M{:.1},{:.1}C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
                course[0].0, course[0].1, course[1].0, course[1].1, course[2].0, course[2].1, course[3].0, course[3].1
            ),
        };
        let _ = writeln!(c.svg, "<path id=\"arrow-{i}\" d=\"{d}\" fill=\"none\" stroke=\"{col}\" stroke-width=\"1.8\"{dash}/>");
        let ((ex, ey), (ux, uy)) = head;
        let (hx, hy) = (ex - ux * 9.0, ey - uy * 9.0);
        let _ = writeln!(
            c.svg,
            "<polygon id=\"arrowhead-{i}\" points=\"{ex:.1},{ey:.1} {:.1},{:.1} {:.1},{:.1}\" fill=\"{col}\"/>",
            hx - uy * 4.5,
            hy + ux * 4.5,
            hx + uy * 4.5,
            hy - ux * 4.5
        );
        courses.push(sample(&course));
    }
    // Labels keep clear of every marker and every error bar.
    let mut taken: Vec<Rect> = pts.iter().map(|&(i, ..)| { let (x, y) = pos(i).unwrap_or_default(); Rect::around(x, y, MARKER_R + 2.0) }).collect();
    for &(_, cost, score) in pts.iter().filter(|p| p.1.seeds > 1) {
        let (x, y) = (sx(cost.mean), sy(score.mean));
        let ((xa, xb), (ya, yb)) = (range(cost), range(score));
        taken.push(Rect { x0: sx(xa) - 1.0, y0: y - 5.0, x1: sx(xb) + 1.0, y1: y + 5.0 });
        taken.push(Rect { x0: x - 5.0, y0: sy(yb) - 1.0, x1: x + 5.0, y1: sy(ya) + 1.0 });
    }
    // And of the arrows, as small boxes every few pixels along them.
    taken.extend(courses.iter().flatten().map(|&(x, y)| Rect::around(x, y, 1.5)));
    let mut placer = Placer { area: plot, taken };
    for &(i, ..) in &pts {
        let (x, y) = pos(i).unwrap_or_default();
        draw_marker(&mut c.svg, &format!("point-{i}"), marker_of(rows[i].kind), x, y, colour(&rows[i]));
    }
    for &(i, ..) in &pts {
        let (x, y) = pos(i).unwrap_or_default();
        let label = &rows[i].stage;
        let col = colour(&rows[i]);
        match placer.place(label, 12.0, x, y) {
            Some((lx, ly, b)) => {
                // A leader line when the label had to move away from its point.
                let (cx, cy) = ((b.x0 + b.x1) / 2.0, (b.y0 + b.y1) / 2.0);
                if ((cx - x).powi(2) + (cy - y).powi(2)).sqrt() > MARKER_R + 22.0 + text_width(label, 12.0, false) / 2.0 {
                    let nx = cx.clamp(b.x0, b.x1).clamp(x.min(b.x0), x.max(b.x1));
                    let ny = if y < b.y0 { b.y0 } else if y > b.y1 { b.y1 } else { cy };
                    let _ = writeln!(c.svg, "<line id=\"leader-{i}\" x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{nx:.1}\" y2=\"{ny:.1}\" stroke=\"{col}\" stroke-opacity=\"0.6\" stroke-width=\"0.8\"/>");
                }
                c.text(&format!("label-{i}"), label, lx, ly, 12.0, false, "start", col);
            }
            None => {
                // Nowhere free inside the plot: the legend and the table still name it.
                let _ = writeln!(c.svg, "<!-- no room for the label of point {i} ({}) -->", escape(label));
            }
        }
    }
}

/// An arrowhead: its tip and its direction.
type Head = ((f64, f64), (f64, f64));

/// The course of the arrow from the marker at `a` to the one at `b`: a straight line between
/// the markers' edges, or, when the markers (nearly) touch, a cubic arc bowing out of them
/// (away from the plot's top edge), so that every step of the ladder keeps its arrow. Returns
/// the course's points (2 for a line, 4 for a cubic) and the head's tip and direction; the
/// course ends at the head's base.
fn arrow_course(a: (f64, f64), b: (f64, f64), plot: &Rect) -> (Vec<(f64, f64)>, Head) {
    let gap = MARKER_R + 3.0;
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len = dx.hypot(dy);
    let unit = |x: f64, y: f64| {
        let l = x.hypot(y).max(1e-9);
        (x / l, y / l)
    };
    let head = |tip: (f64, f64), u: (f64, f64)| (tip.0 - u.0 * 9.0, tip.1 - u.1 * 9.0);
    if len >= 2.0 * gap + 14.0 {
        let u = unit(dx, dy);
        let tip = (b.0 - u.0 * gap, b.1 - u.1 * gap);
        return (vec![(a.0 + u.0 * gap, a.1 + u.1 * gap), head(tip, u)], (tip, u));
    }
    let u = if len > 1e-6 { unit(dx, dy) } else { (1.0, 0.0) };
    // The normal pointing up, unless that leaves the plot.
    let mut n = if u.0 >= 0.0 { (u.1, -u.0) } else { (-u.1, u.0) };
    if a.1.min(b.1) - 40.0 < plot.y0 {
        n = (-n.0, -n.1);
    }
    let (c1, c2) = ((a.0 + n.0 * 34.0 - u.0 * 10.0, a.1 + n.1 * 34.0 - u.1 * 10.0), (b.0 + n.0 * 34.0 + u.0 * 10.0, b.1 + n.1 * 34.0 + u.1 * 10.0));
    let start = { let v = unit(c1.0 - a.0, c1.1 - a.1); (a.0 + v.0 * gap, a.1 + v.1 * gap) };
    let into = unit(b.0 - c2.0, b.1 - c2.1);
    let tip = (b.0 - into.0 * gap, b.1 - into.1 * gap);
    (vec![start, c1, c2, head(tip, into)], (tip, into))
}

/// Points every few pixels along a course from [`arrow_course`].
fn sample(course: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let at = |t: f64| -> (f64, f64) {
        if course.len() == 2 {
            return (course[0].0 + (course[1].0 - course[0].0) * t, course[0].1 + (course[1].1 - course[0].1) * t);
        }
        let m = 1.0 - t;
        let w = [m * m * m, 3.0 * m * m * t, 3.0 * m * t * t, t * t * t];
        (0..4).fold((0.0, 0.0), |acc, k| (acc.0 + w[k] * course[k].0, acc.1 + w[k] * course[k].1))
    };
    let len: f64 = course.windows(2).map(|w| (w[1].0 - w[0].0).hypot(w[1].1 - w[0].1)).sum();
    let n = (len / 4.0).ceil().max(1.0) as usize;
    (0..=n).map(|k| at(k as f64 / n as f64)).collect()
}

/// Frame, grid lines and tick labels of a panel.
fn axes(c: &mut Canvas, id: &str, plot: &Rect, xt: &[(f64, String)], yt: &[(f64, String)], sx: &dyn Fn(f64) -> f64, sy: &dyn Fn(f64) -> f64) {
    let _ = writeln!(
        c.svg,
        "<rect id=\"plot-{id}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#fafafa\" stroke=\"#999\"/>",
        plot.x0,
        plot.y0,
        plot.x1 - plot.x0,
        plot.y1 - plot.y0
    );
    for (k, (v, s)) in yt.iter().enumerate() {
        let y = sy(*v);
        let _ = writeln!(c.svg, "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e3e3e3\"/>", plot.x0, plot.x1);
        c.text(&format!("{id}-ytick-{k}"), s, plot.x0 - 6.0, y + 4.0, 11.0, false, "end", "#444");
    }
    for (k, (v, s)) in xt.iter().enumerate() {
        let x = sx(*v);
        let _ = writeln!(c.svg, "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#e3e3e3\"/>", plot.y0, plot.y1);
        c.text(&format!("{id}-xtick-{k}"), s, x, plot.y1 + 16.0, 11.0, false, "middle", "#444");
    }
}

/// Width of one bar's slot: room for its stage label.
fn slot(rows: &[ChartRow], series: &str) -> f64 {
    rows.iter().filter(|r| r.series == series).map(|r| text_width(&r.stage, 11.0, false) + 10.0).fold(30.0, f64::max)
}

/// Each start's bars and the room its name needs under them.
fn group_width(rows: &[ChartRow], series: &str) -> f64 {
    let n = rows.iter().filter(|r| r.series == series && r.degeneration.is_some()).count() as f64;
    (n * slot(rows, series)).max(text_width(series, 12.0, true) + 14.0)
}

const BARS_LEFT: f64 = 62.0;
const GROUP_GAP: f64 = 18.0;

fn bars_width(rows: &[ChartRow], series: &[String]) -> f64 {
    let groups: f64 = series.iter().map(|s| group_width(rows, s)).sum::<f64>() + GROUP_GAP * series.len().saturating_sub(1) as f64;
    (BARS_LEFT + groups + 16.0).max(text_width("Degeneration rate per start and stage", 13.0, true) + 10.0).max(260.0)
}

/// Degeneration rate per start and stage.
#[allow(clippy::too_many_arguments)]
fn bars(c: &mut Canvas, rows: &[ChartRow], series: &[String], colour: &dyn Fn(&ChartRow) -> &'static str, x0: f64, y0: f64, w: f64) {
    let plot = Rect { x0: x0 + BARS_LEFT, y0: y0 + 30.0, x1: x0 + w - 10.0, y1: y0 + PANEL_H - 52.0 };
    c.text("bars-title", "Degeneration rate per start and stage", x0, y0 + 14.0, 13.0, true, "start", "#222");
    let top = rows.iter().filter_map(|r| r.degeneration.as_ref()).map(|s| range(s).1).fold(0.0, f64::max);
    // Room above the tallest error bar for its value label; rates end at 100%.
    let (_, ymax, step) = nice_axis(0.0, (top * 1.15).max(0.05), 5);
    let ymax = ymax.min(1.0);
    let step = if ymax < 1.0 { step } else { nice_axis(0.0, 1.0, 5).2 };
    let sy = |v: f64| plot.y1 - v / ymax * (plot.y1 - plot.y0);
    let yt: Vec<(f64, String)> = ticks(0.0, ymax, step).into_iter().map(|(v, _)| (v, format!("{:.0}%", v * 100.0))).collect();
    axes(c, "bars", &plot, &[], &yt, &|x| x, &sy);
    c.y_title("bars-y-title", "pages degenerate (%)", x0 + 14.0, &plot);
    let mut gx = plot.x0 + 8.0;
    for (g, s) in series.iter().enumerate() {
        let gw = group_width(rows, s);
        let members: Vec<(usize, &ChartRow)> = rows.iter().enumerate().filter(|(_, r)| &r.series == s && r.degeneration.is_some()).collect();
        let sw = if members.is_empty() { 0.0 } else { gw / members.len() as f64 };
        for (k, (i, r)) in members.iter().enumerate() {
            let d = r.degeneration.as_ref().expect("filtered");
            let cx = gx + sw * (k as f64 + 0.5);
            let bw = (sw - 10.0).min(34.0);
            // Lighter for earlier stages of the ladder.
            let opacity = match marker_of(r.kind) {
                Marker::Hollow => 0.35,
                Marker::Dot => 0.65,
                Marker::Diamond => 1.0,
            };
            let _ = writeln!(
                c.svg,
                "<rect id=\"bar-{i}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"{}\" fill-opacity=\"{opacity}\"/>",
                cx - bw / 2.0,
                sy(d.mean),
                (sy(0.0) - sy(d.mean)).max(0.0),
                colour(r)
            );
            let (lo, hi) = range(d);
            if d.seeds > 1 {
                let _ = writeln!(
                    c.svg,
                    "<path id=\"errorbar-bar-{i}\" d=\"M{cx:.1},{:.1}V{:.1}M{:.1},{:.1}h8M{:.1},{:.1}h8\" stroke=\"#333\" stroke-width=\"1.3\" fill=\"none\"/>",
                    sy(lo), sy(hi), cx - 4.0, sy(lo), cx - 4.0, sy(hi)
                );
            }
            c.text(&format!("bar-value-{i}"), &format!("{:.0}%", d.mean * 100.0), cx, sy(hi) - 5.0, 10.0, false, "middle", "#333");
            c.text(&format!("bar-label-{i}"), &r.stage, cx, plot.y1 + 15.0, 11.0, false, "middle", "#444");
        }
        c.text(&format!("bar-group-{g}"), s, gx + gw / 2.0, plot.y1 + 33.0, 12.0, true, "middle", colour_of(series, s));
        gx += gw + GROUP_GAP;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axes_have_round_ticks() {
        assert_eq!(nice_axis(0.0, 19.42, 4), (0.0, 20.0, 5.0));
        let (lo, hi, step) = nice_axis(0.086, 0.099, 5);
        assert!((step - 0.005).abs() < 1e-12 && (lo - 0.085).abs() < 1e-9 && (hi - 0.1).abs() < 1e-9, "{lo} {hi} {step}");
        let t: Vec<String> = ticks(0.0, 0.1, 0.02).into_iter().map(|t| t.1).collect();
        assert_eq!(t, ["0.00", "0.02", "0.04", "0.06", "0.08", "0.10"]);
        let (lo, hi, _) = nice_axis(3.0, 3.0, 5);
        assert!(lo < 3.0 && hi > 3.0, "a single value gets a range around it");
    }

    /// Two starts × untuned, SFT, DPO as the demo gives them: the SFT and DPO points of both
    /// starts within a few thousandths of each other, the two untuned points close together
    /// far away, one series' SFT and DPO on the very same spot.
    fn demo_like() -> Vec<ChartRow> {
        let spread = |mean: f64, half: f64, seeds: usize| Some(Spread { mean, min: (mean - half).max(0.0), max: mean + half * 0.6, seeds, interval: None });
        let mut rows = Vec::new();
        for (s, series) in ["generalist", "ocr-specialist"].into_iter().enumerate() {
            let base = rows.len();
            let o = s as f64 * 0.004;
            rows.push(ChartRow { series: series.into(), stage: "untuned".into(), kind: None, parent: None, score: spread(0.031 + o, 0.0, 3), cost: spread(3.04 + o, 0.05, 3), degeneration: spread(0.0, 0.0, 3) });
            rows.push(ChartRow { series: series.into(), stage: "sft".into(), kind: Some(StageKind::Sft), parent: Some(base), score: spread(0.093 - o, 0.008, 3), cost: spread(5.1, 0.3, 3), degeneration: spread(0.77 - 0.3 * s as f64, 0.1, 3) });
            let dpo_score = if s == 0 { 0.099 } else { 0.093 - o };
            rows.push(ChartRow { series: series.into(), stage: "dpo".into(), kind: Some(StageKind::Dpo), parent: Some(base + 1), score: spread(dpo_score, 0.01, 3), cost: spread(if s == 0 { 4.9 } else { 5.1 }, 0.2, 3), degeneration: spread(0.48 - 0.4 * s as f64, 0.12, 3) });
        }
        rows
    }

    fn walk<'a>(g: &'a resvg::usvg::Group, out: &mut Vec<&'a resvg::usvg::Node>) {
        for n in g.children() {
            out.push(n);
            if let resvg::usvg::Node::Group(g) = n {
                walk(g, out);
            }
        }
    }

    /// Renders `svg` with the system fonts (as a browser would, DejaVu Sans here).
    fn parse(svg: &str) -> resvg::usvg::Tree {
        let mut db = resvg::usvg::fontdb::Database::new();
        db.load_system_fonts();
        assert!(!db.is_empty(), "no system fonts to render the chart's text with (Debian: fonts-dejavu-core)");
        let opts = resvg::usvg::Options { fontdb: std::sync::Arc::new(db), ..Default::default() };
        resvg::usvg::Tree::from_str(svg, &opts).expect("the chart is valid SVG")
    }

    type Boxes = Vec<(String, resvg::tiny_skia::Rect)>;

    /// (every text's box, every other node's box), by id, in canvas coordinates.
    fn boxes(tree: &resvg::usvg::Tree) -> (Boxes, Boxes) {
        let mut nodes = Vec::new();
        walk(tree.root(), &mut nodes);
        let mut texts = Vec::new();
        let mut shapes = Vec::new();
        for n in nodes {
            match n {
                resvg::usvg::Node::Text(t) => texts.push((t.id().to_string(), t.abs_bounding_box())),
                n if !n.id().is_empty() => shapes.push((n.id().to_string(), n.abs_bounding_box())),
                _ => {}
            }
        }
        (texts, shapes)
    }

    fn overlap(a: &resvg::tiny_skia::Rect, b: &resvg::tiny_skia::Rect) -> bool {
        a.left() < b.right() && b.left() < a.right() && a.top() < b.bottom() && b.top() < a.bottom()
    }

    fn inside(a: &resvg::tiny_skia::Rect, b: &resvg::tiny_skia::Rect) -> bool {
        a.left() >= b.left() - 0.5 && a.right() <= b.right() + 0.5 && a.top() >= b.top() - 0.5 && a.bottom() <= b.bottom() + 0.5
    }

    /// The layout guard: rendered with resvg, no two texts' real boxes overlap, every marker and
    /// error bar lies inside its panel's axes, every point has its label, and each marker shows
    /// its start's colour in the PNG. `LADDER_CHART_PNG=path` keeps the PNG to look at.
    #[test]
    fn the_rendered_figure_has_no_overlapping_text_and_every_point_inside_its_axes() {
        let rows = demo_like();
        let svg = render("Score, cost and degeneration per start and stage (mean and min–max over 3 seeds)", &rows);
        let tree = parse(&svg);
        let (texts, shapes) = boxes(&tree);
        assert_eq!(texts.len(), svg.matches("<text ").count(), "every text was laid out with a font");
        for (i, (a, ra)) in texts.iter().enumerate() {
            for (b, rb) in &texts[..i] {
                assert!(!overlap(ra, rb), "texts {a} {ra:?} and {b} {rb:?} overlap");
            }
        }
        let shape = |id: &str| shapes.iter().find(|(n, _)| n == id).map(|(_, r)| *r).unwrap_or_else(|| panic!("no {id}"));
        let (scatter, bars) = (shape("plot-scatter"), shape("plot-bars"));
        for (id, r) in &shapes {
            let panel = if id.starts_with("point-") || id.starts_with("errorbar-") && !id.starts_with("errorbar-bar-") {
                scatter
            } else if id.starts_with("bar-") || id.starts_with("errorbar-bar-") {
                bars
            } else {
                continue;
            };
            assert!(inside(r, &panel), "{id} {r:?} lies outside its axes {panel:?}");
        }
        for i in 0..rows.len() {
            assert!(texts.iter().any(|(n, _)| *n == format!("label-{i}")), "point {i} has no label");
            // A 0% bar has no area to draw; its value label still says 0%.
            assert!(texts.iter().any(|(n, _)| *n == format!("bar-value-{i}")), "no bar value for row {i}");
        }
        // Labels clear of every marker, too.
        for (n, t) in texts.iter().filter(|(n, _)| n.starts_with("label-")) {
            for (m, p) in shapes.iter().filter(|(m, _)| m.starts_with("point-")) {
                assert!(!overlap(t, p), "label {n} covers marker {m}");
            }
        }
        // The arrows: SFT → DPO for the generalist (they differ); none where the two coincide.
        assert!(svg.contains("id=\"arrow-2\"") && svg.contains("id=\"arrowhead-2\""), "generalist sft → dpo");
        assert!(svg.contains("<path id=\"arrow-5\" d=\"M") && svg.split("id=\"arrow-5\"").nth(1).unwrap().split('>').next().unwrap().contains('C'), "the specialist's sft and dpo sit on one spot: an arc");
        assert!(svg.contains("id=\"arrow-1\"") && svg.contains("stroke-dasharray"), "untuned → sft, dashed");
        for id in ["arrow-1", "arrow-2", "arrow-4", "arrow-5", "arrowhead-5"] {
            assert!(inside(&shape(id), &scatter), "{id} leaves the axes");
        }
        // Render, and find each filled marker's colour at its centre.
        let size = tree.size().to_int_size();
        let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
        resvg::render(&tree, resvg::tiny_skia::Transform::identity(), &mut pixmap.as_mut());
        for (i, row) in rows.iter().enumerate().filter(|(_, r)| r.kind.is_some()) {
            let r = shape(&format!("point-{i}"));
            let (x, y) = (((r.left() + r.right()) / 2.0) as u32, ((r.top() + r.bottom()) / 2.0) as u32);
            let px = pixmap.pixel(x, y).unwrap();
            let want = PALETTE[if row.series == "generalist" { 0 } else { 1 }];
            let want: Vec<u8> = (0..3).map(|k| u8::from_str_radix(&want[1 + 2 * k..3 + 2 * k], 16).unwrap()).collect();
            let got = [px.red(), px.green(), px.blue()];
            assert!(got.iter().zip(&want).all(|(g, w)| g.abs_diff(*w) <= 2), "point {i} at ({x}, {y}): {got:?}, want {want:?}");
        }
        if let Some(path) = std::env::var_os("LADDER_CHART_PNG") {
            pixmap.save_png(path).unwrap();
        }
    }

    #[test]
    fn text_boxes_follow_the_anchor() {
        let b = text_box("abc", 100.0, 50.0, 10.0, false, "middle");
        assert!((b.x0 + b.x1) / 2.0 - 100.0 < 1e-9 && b.y0 < 50.0 && b.y1 > 50.0);
        assert!(text_width("mmm", 12.0, false) > text_width("iii", 12.0, false));
    }
}
