//! HTML building blocks: escaping, the page skeleton with its inline style sheet, tables. Pages are
//! self-contained (no scripts, fonts or images fetched from anywhere) and deterministic: the same
//! tables give the same bytes.

use std::fmt::Write;

use super::table::{Cell, Table};

/// Escape text for element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1234567` → `1,234,567`.
pub fn fmt_rows(rows: u64) -> String {
    let s = rows.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `0.012` → `12ms`, `3.4` → `3.4s`, `300` → `5m00s`.
pub fn fmt_secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

/// The style sheet every page inlines.
pub const CSS: &str = r#"
:root { --fg: #1d2329; --muted: #66707a; --line: #d9dee3; --bg: #ffffff; --panel: #f6f8fa;
        --ok: #1a7f37; --run: #9a6700; --bad: #cf222e; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 1280px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 20px 0 6px; }
h4 { font-size: 13px; margin: 12px 0 4px; }
p.lead, p.note, .muted { color: var(--muted); }
p.note { font-size: 13px; margin: 4px 0; }
code, .mono, td, th { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
/* wide and long tables scroll inside their box, the header row and the first column stay in view */
.scroll { overflow: auto; max-width: 100%; max-height: 75vh; }
.scroll thead th { position: sticky; top: 0; z-index: 2; }
.scroll td:first-child, .scroll th:first-child { position: sticky; left: 0; z-index: 1; background: var(--panel); }
.scroll thead th:first-child { z-index: 3; }
table { border-collapse: collapse; margin: 6px 0 10px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; white-space: nowrap; }
th { background: var(--panel); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.wrap { white-space: normal; min-width: 240px; }
tr.best td { background: #eef9f0; }
figure { margin: 16px 0 24px; }
figure svg { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
a { color: #0969da; text-decoration: none; }
a:hover { text-decoration: underline; }
nav.toc { columns: 3 220px; font-size: 13px; margin: 12px 0; }
nav.toc a { display: block; }
.cell { border: 1px solid var(--line); border-left: 4px solid var(--ok); border-radius: 4px; margin: 10px 0; padding: 8px 12px; }
.cell.run { border-left-color: var(--run); }
.cell.damaged { border-left-color: var(--bad); }
.cell > header { display: flex; gap: 12px; align-items: baseline; flex-wrap: wrap; }
.cell > header h3 { margin: 0; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
.badge { font-size: 11px; font-weight: 600; padding: 1px 7px; border-radius: 10px; color: #fff; background: var(--ok); }
.run .badge { background: var(--run); }
.damaged .badge { background: var(--bad); }
.output { margin: 6px 0 2px 4px; }
details > summary { cursor: pointer; color: var(--muted); font-size: 12px; }
.stage-head { margin-top: 28px; }
"#;

/// A whole page: `<!DOCTYPE html>`, the inline style sheet, `body` inside `<main>`.
pub fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"saeflow {}\">\n<title>{}</title>\n<style>{}</style>\n</head>\n<body>\n<main>\n{}</main>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        escape(title),
        CSS,
        body
    )
}

/// How a table is drawn.
#[derive(Clone, Copy, Debug, Default)]
pub struct TableStyle<'a> {
    /// Columns whose text wraps (explanations).
    pub wrap: &'a [&'a str],
    /// Highlight this row (the best variant).
    pub highlight: Option<usize>,
}

/// A table: numbers right-aligned, every cell escaped, inside a horizontally scrolling box.
pub fn table(t: &Table, style: TableStyle<'_>) -> String {
    let mut out = String::from("<div class=\"scroll\"><table>\n<thead><tr>");
    for c in &t.columns {
        let _ = write!(out, "<th>{}</th>", escape(c));
    }
    out += "</tr></thead>\n<tbody>\n";
    for (i, row) in t.rows.iter().enumerate() {
        out += if style.highlight == Some(i) { "<tr class=\"best\">" } else { "<tr>" };
        for (cell, col) in row.iter().zip(&t.columns) {
            let class = if cell.is_numeric() {
                " class=\"num\""
            } else if style.wrap.contains(&col.as_str()) {
                " class=\"wrap\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{}</td>", escape(&cell.display()));
        }
        out += "</tr>\n";
    }
    out += "</tbody>\n</table></div>\n";
    out
}

/// A two-column key/value table (an output's schema, an instance's facts).
pub fn pairs(rows: &[(String, String)]) -> String {
    let mut t = Table::new(["name", "value"]);
    for (k, v) in rows {
        t.push(vec![Cell::Str(k.clone()), Cell::Str(v.clone())]);
    }
    table(&t, TableStyle::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn tables_escape_cells_and_align_numbers() {
        let mut t = Table::new(["label", "f1"]);
        t.push(vec![Cell::Str("<b>".into()), Cell::Float(0.5)]);
        let html = table(&t, TableStyle::default());
        assert!(html.contains("<td>&lt;b&gt;</td><td class=\"num\">0.5000</td>"), "{html}");
    }

    #[test]
    fn formats_counts_and_durations() {
        assert_eq!(fmt_rows(1234567), "1,234,567");
        assert_eq!(fmt_secs(0.0123), "12ms");
        assert_eq!(fmt_secs(300.0), "5m00s");
    }
}
