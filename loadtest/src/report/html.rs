//! The HTML both pages share: the style sheet, the page head, figures, escaping, table cells.

use std::{collections::BTreeMap, fmt::Write as _};

use super::chart::ms;

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1000px}\
h1{font-size:24px}h2{font-size:18px;margin-top:28px}\
code.cmd{display:block;background:#f4f4f4;padding:8px;white-space:pre-wrap;word-break:break-all}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f0f0f0}td.l,th.l{text-align:left}figure{margin:8px 0}\
.note{color:#555;font-size:13px}";

pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

pub(super) fn page_start(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(title),
        escape(title)
    );
}

pub(super) fn figure(out: &mut String, id: &str, heading: &str, svg: &str) {
    let _ = write!(out, "<h2>{}</h2>\n<figure id=\"{id}\">\n{svg}\n</figure>\n", escape(heading));
}

pub(super) fn ms_cell(us: u64) -> String {
    format!("{:.3}", ms(us))
}

pub(super) fn statuses_cell(by_status: &BTreeMap<String, u64>) -> String {
    if by_status.is_empty() {
        return "-".to_owned();
    }
    by_status.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", ")
}
