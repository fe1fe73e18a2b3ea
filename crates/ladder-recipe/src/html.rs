//! `report.html`: the comparison as one self-contained page (inline CSS and SVG, no script, no
//! network), so that it can be mailed or opened from a run folder as it is.

use std::fmt::Write as _;

use crate::chart::escape;
use crate::report::{format_spread, Comparison};

const STYLE: &str = "body{font-family:DejaVu Sans,Verdana,sans-serif;margin:24px;color:#222;max-width:1200px}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}p,li{line-height:1.45}\
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}\
th{background:#f3f3f3}td.t{text-align:left}.beyond{color:#1a5e1a}.noise{color:#666}figure{margin:0}";

/// The page: the charts, the differences in words, the table, how to read them.
pub fn page(c: &Comparison, title: &str, chart_svg: &str) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>ladder compare: {t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>ladder compare: {t}</h1>\n<p>{}</p>\n",
        escape(&c.legend()),
        t = escape(title)
    );
    let _ = writeln!(s, "<figure>\n{chart_svg}</figure>");
    s.push_str("<h2>Differences larger than the spread</h2>\n");
    list(&mut s, c, true);
    s.push_str("<h2>Within noise</h2>\n");
    list(&mut s, c, false);
    s.push_str("<h2>Every model</h2>\n<table>\n<tr>");
    let multi = c.run_dirs.len() > 1;
    let heads = ["start", "level", "stage", "eval", "seeds", "score", "degeneration", "JSON valid", "pages/s", "cost / M pages", "train s", "train tokens"];
    if multi {
        s.push_str("<th>run</th>");
    }
    for h in heads {
        let _ = write!(s, "<th>{h}</th>");
    }
    s.push_str("</tr>\n");
    for r in &c.rows {
        s.push_str("<tr>");
        if multi {
            let _ = write!(s, "<td class=\"t\">{}</td>", escape(&r.run));
        }
        let cells = [
            r.start.clone(),
            r.level.map(|l| l.to_string()).unwrap_or_else(|| "—".into()),
            r.stage_label().to_string(),
            r.eval_stage.clone().unwrap_or_else(|| "—".into()),
            r.per_seed.len().to_string(),
            format_spread(r.score.as_ref(), false, 3),
            format_spread(r.degeneration_rate.as_ref(), true, 1),
            format_spread(r.json_valid_rate.as_ref(), true, 1),
            format_spread(r.pages_per_s.as_ref(), false, 2),
            format_spread(r.cost_per_million_pages.as_ref(), false, 2),
            format!("{:.1}", r.train_seconds),
            r.train_tokens.to_string(),
        ];
        for (k, cell) in cells.iter().enumerate() {
            let class = if k < 4 { " class=\"t\"" } else { "" };
            let _ = write!(s, "<td{class}>{}</td>", escape(cell));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n<p>Run folders: ");
    let dirs: Vec<String> = c.run_dirs.iter().map(|d| format!("<code>{}</code>", escape(&d.display().to_string()))).collect();
    s.push_str(&dirs.join(", "));
    s.push_str(". Cost per million pages = price per hour / (pages per second × 3600) × 10⁶, with the throughput measured by each eval stage on its own machine.</p>\n</body>\n</html>\n");
    s
}

fn list(s: &mut String, c: &Comparison, beyond: bool) {
    let items: Vec<&str> = c.findings.iter().filter(|f| f.beyond_noise() == beyond).map(|f| f.text.as_str()).collect();
    if items.is_empty() {
        s.push_str("<p>None.</p>\n");
        return;
    }
    let class = if beyond { "beyond" } else { "noise" };
    let _ = writeln!(s, "<ul class=\"{class}\">");
    for t in items {
        let _ = writeln!(s, "<li>{}</li>", escape(t));
    }
    s.push_str("</ul>\n");
}
