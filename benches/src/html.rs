//! The HTML reports: one self-contained file each (inline SVG, no scripts,
//! no fonts or styles from the network), written as XHTML so an XML parser
//! reads it. Every drawn value carries its case id and value as attributes
//! (`data-case`, `data-value`, `data-min`, `data-max`), and every plot its
//! scale (`data-y0`, `data-px-per-unit`), so a test can check each mark
//! against the JSON embedded in `<script type="application/json" id="bench-json">`.

use std::fmt::Write as _;

use super::{group_of, Comparison, Report, Row};

/// Escape text for XML/HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// `id` escaped, with a line break allowed after each `/` (case ids are long: the
/// rows table fits a 1280-px window only when they may wrap there).
fn breakable(id: &str) -> String {
    esc(id).replace('/', "/<wbr/>")
}

/// JSON made safe inside a `<script>` element of an XHTML document: no `<`, `>` or `&`.
fn script_json(json: &str) -> String {
    json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:72em}\
table{border-collapse:collapse;margin:1em 0;font-size:85%;max-width:100%}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}\
td.l,th.l{text-align:left}.warn{color:#a40}svg{background:#fcfcfc;border:1px solid #ddd;margin:0.5em 1em 0.5em 0}\
svg text{font-size:11px;font-family:system-ui,sans-serif}code{background:#f3f3f3;padding:0 3px}";

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(title)
    )
}

const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

/// One series of a chart: points at thread counts.
struct Series {
    name: String,
    /// (threads, case id, value, min, max)
    points: Vec<(usize, String, f64, f64, f64)>,
}

/// A horizontal reference line (a peer).
struct HLine {
    name: String,
    id: String,
    value: f64,
}

/// Throughput (or efficiency) vs threads, x on a log2 scale of the ladder.
fn chart(title: &str, unit: &str, ladder: &[usize], series: &[Series], hlines: &[HLine], field: &str, bars: bool) -> String {
    // The legend (peers first, then the series) is a column right of the plot, one
    // entry a line: as wide as its longest name, as tall as its entries.
    let longest = series.iter().map(|s| s.name.as_str()).chain(hlines.iter().map(|l| l.name.as_str())).map(text_width).fold(0.0, f64::max);
    let (left, right, top, bottom, pw, ph): (f64, f64, f64, f64, f64, f64) = (56.0, (LEGEND_SWATCH + longest + 8.0).max(170.0), 28.0, 40.0, 394.0, 232.0);
    let entries = (series.len() + hlines.len()) as f64;
    let w = left + pw + right;
    let h = (top + ph + bottom).max(top + 4.0 + LEGEND_LINE * entries + 8.0);
    let mut ymax = 0.0f64;
    for s in series {
        for p in &s.points {
            ymax = ymax.max(p.4).max(p.2);
        }
    }
    for l in hlines {
        ymax = ymax.max(l.value);
    }
    let ymax = nice_ceiling(ymax);
    let scale = ph / ymax;
    let y0 = top + ph;
    let xs: Vec<f64> = ladder
        .iter()
        .enumerate()
        .map(|(i, _)| if ladder.len() == 1 { left + pw / 2.0 } else { left + pw * i as f64 / (ladder.len() - 1) as f64 })
        .collect();
    let x_of = |t: usize| ladder.iter().position(|&l| l == t).map(|i| xs[i]).unwrap_or(left);
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\">\n<title>{}</title>\n<text x=\"{left}\" y=\"16\" font-weight=\"bold\">{}</text>\n",
        esc(title),
        esc(title)
    );
    let _ = writeln!(o, "<g class=\"plot\" data-field=\"{field}\" data-y0=\"{y0:.2}\" data-px-per-unit=\"{scale}\">");
    // Axes and grid.
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let y = y0 - v * scale;
        let _ = writeln!(
            o,
            "<line x1=\"{left}\" y1=\"{y:.2}\" x2=\"{:.2}\" y2=\"{y:.2}\" stroke=\"#e4e4e4\"/><text class=\"tick\" x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>",
            left + pw,
            left - 4.0,
            y + 4.0,
            trim_num(v)
        );
    }
    let _ = writeln!(o, "<text x=\"12\" y=\"{:.2}\" transform=\"rotate(-90 12 {:.2})\" text-anchor=\"middle\">{}</text>", top + ph / 2.0, top + ph / 2.0, esc(unit));
    for (i, t) in ladder.iter().enumerate() {
        let _ = writeln!(o, "<text class=\"tick\" x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\">{t}</text>", xs[i], y0 + 16.0);
    }
    let _ = writeln!(o, "<text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\">threads</text>", left + pw / 2.0, y0 + 34.0);
    for (k, l) in hlines.iter().enumerate() {
        let y = y0 - l.value * scale;
        let _ = writeln!(
            o,
            "<line class=\"peer\" data-case=\"{}\" data-value=\"{}\" x1=\"{left}\" y1=\"{y:.2}\" x2=\"{:.2}\" y2=\"{y:.2}\" stroke=\"#555\" stroke-dasharray=\"{}\"/>",
            esc(&l.id),
            l.value,
            left + pw,
            if k % 2 == 0 { "6 3" } else { "2 3" }
        );
        // Named in the legend, not beside the line: two peers of close values would overlap there.
        let ly = top + LEGEND_LINE * k as f64 + 4.0;
        let _ = writeln!(
            o,
            "<line x1=\"{:.2}\" y1=\"{:.2}\" x2=\"{:.2}\" y2=\"{:.2}\" stroke=\"#555\" stroke-dasharray=\"{}\"/><text class=\"legend\" x=\"{:.2}\" y=\"{:.2}\" fill=\"#555\">{}</text>",
            left + pw + 6.0,
            ly + 11.5,
            left + pw + 16.0,
            ly + 11.5,
            if k % 2 == 0 { "6 3" } else { "2 3" },
            left + pw + LEGEND_SWATCH,
            ly + 14.0,
            esc(&l.name)
        );
    }
    for (k, s) in series.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let pts: Vec<String> = s.points.iter().map(|p| format!("{:.2},{:.2}", x_of(p.0), y0 - p.2 * scale)).collect();
        if pts.len() > 1 {
            let _ = writeln!(o, "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\" points=\"{}\"/>", pts.join(" "));
        }
        for p in &s.points {
            let x = x_of(p.0);
            if bars {
            let _ = writeln!(
                o,
                "<line class=\"err\" data-case=\"{}\" data-min=\"{}\" data-max=\"{}\" x1=\"{x:.2}\" y1=\"{:.2}\" x2=\"{x:.2}\" y2=\"{:.2}\" stroke=\"{c}\"/>",
                esc(&p.1),
                p.3,
                p.4,
                y0 - p.3 * scale,
                y0 - p.4 * scale
            );
            }
            let _ = writeln!(
                o,
                "<circle class=\"point\" data-case=\"{}\" data-value=\"{}\" cx=\"{x:.2}\" cy=\"{:.2}\" r=\"3\" fill=\"{c}\"><title>{}: {:.2}</title></circle>",
                esc(&p.1),
                p.2,
                y0 - p.2 * scale,
                esc(&p.1),
                p.2
            );
        }
        let ly = top + LEGEND_LINE * (k + hlines.len()) as f64 + 4.0;
        let _ = writeln!(
            o,
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"10\" height=\"3\" fill=\"{c}\"/><text class=\"legend\" x=\"{:.2}\" y=\"{:.2}\">{}</text>",
            left + pw + 6.0,
            ly + 10.0,
            left + pw + LEGEND_SWATCH,
            ly + 14.0,
            esc(&s.name)
        );
    }
    o.push_str("</g>\n</svg>\n");
    o
}

/// Height of one legend entry: a line of 11-px text and its leading.
const LEGEND_LINE: f64 = 14.0;
/// From the legend column's edge to an entry's text: the swatch and a gap.
const LEGEND_SWATCH: f64 = 20.0;

/// A generous width of `text` in the charts' 11-px sans-serif: 6.6 px a character.
fn text_width(text: &str) -> f64 {
    6.6 * text.chars().count() as f64
}

fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

fn trim_num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A row's GB/s cells: median, min, max with their data attributes.
fn gbps_cells(r: &Row) -> String {
    format!(
        "<td data-case=\"{id}\" data-field=\"median\">{:.2}</td><td data-case=\"{id}\" data-field=\"min\">{:.2}</td><td data-case=\"{id}\" data-field=\"max\">{:.2}</td><td data-case=\"{id}\" data-field=\"spread\" class=\"{}\">{:.0}%</td>",
        r.gb_per_s.median,
        r.gb_per_s.min,
        r.gb_per_s.max,
        if r.wide_spread { "warn" } else { "" },
        r.spread * 100.0,
        id = esc(&r.id)
    )
}

fn opt_cell(id: &str, field: &str, v: Option<f64>, percent: bool) -> String {
    match v {
        Some(v) if percent => format!("<td data-case=\"{}\" data-field=\"{field}\">{:.0}%</td>", esc(id), v * 100.0),
        Some(v) => format!("<td data-case=\"{}\" data-field=\"{field}\">{:.2}</td>", esc(id), v),
        None => "<td>–</td>".into(),
    }
}

/// The report of one run; `json` is the run's JSON, embedded verbatim.
pub fn report(r: &Report, json: &str) -> String {
    let mut o = head("sealpipe bench");
    let m = &r.machine;
    let _ = writeln!(o, "<h1>sealpipe bench</h1>");
    let _ = writeln!(o, "<p>Command: <code>{}</code><br/>sealpipe {}, {} repeat(s) per case interleaved across cases, at least {} s per sample; run took {:.0} s.</p>", esc(&r.command), esc(&r.version), r.settings.repeat, r.settings.seconds, r.wall_seconds);
    let feats: Vec<String> = m.features.iter().map(|(k, v)| format!("{k}{}", if *v { "+" } else { "−" })).collect();
    let _ = writeln!(
        o,
        "<table class=\"machine\"><tr><th class=\"l\">CPU</th><td class=\"l\">{}</td></tr><tr><th class=\"l\">logical CPUs</th><td class=\"l\">{}</td></tr><tr><th class=\"l\">features</th><td class=\"l\">{}</td></tr><tr><th class=\"l\">last-level cache</th><td class=\"l\">{}</td></tr><tr><th class=\"l\">memory</th><td class=\"l\">{}</td></tr><tr><th class=\"l\">kernel</th><td class=\"l\">{}</td></tr><tr><th class=\"l\">governor</th><td class=\"l\">{}</td></tr><tr><th class=\"l\">bench folder</th><td class=\"l\">{} ({})</td></tr></table>",
        esc(&m.cpu_model),
        m.cpus,
        esc(&feats.join(" ")),
        esc(m.cache.as_deref().unwrap_or("unknown")),
        m.memory_bytes.map_or("unknown".into(), sealpipe::size::human),
        esc(m.kernel.as_deref().unwrap_or("unknown")),
        esc(m.governor.as_deref().unwrap_or("not readable")),
        esc(&m.dir),
        esc(m.dir_filesystem.as_deref().unwrap_or("unknown filesystem"))
    );
    for w in &r.warnings {
        let _ = writeln!(o, "<p class=\"warn\">Warning: {}</p>", esc(w));
    }
    let _ = writeln!(
        o,
        "<p>Figures are GB/s (10<sup>9</sup> bytes/s of plaintext): the median of the repeats, error bars from the slowest to the fastest. \
In memory: the cipher alone on one buffer ({}); CBC encryption is sequential per file, so it is shown as one file (one thread) and as N files interleaved (multi-buffer, 8 per thread, one key). \
File → file: read, encrypt/decrypt + SHA-256, write through the page cache (warm), and with the output fsynced. \
openssl lines: <code>openssl speed -evp</code>, 16 KiB blocks, one thread and (<code>-multi N</code>) the most threads; a row's ratio is to openssl at its own thread count where that ran, else to one thread. Efficiency: median / (threads × the 1-thread median).</p>",
        match r.settings.cache_bytes {
            0 => format!("{} does not fit the caches; none that fits them was measured", sealpipe::size::human(r.settings.memory_bytes)),
            fits => format!("{} fits the caches, {} does not", sealpipe::size::human(fits), sealpipe::size::human(r.settings.memory_bytes)),
        }
    );
    // Charts per mode.
    let ladder = &r.settings.threads;
    let mut modes: Vec<&str> = Vec::new();
    for row in r.rows.iter().filter(|x| x.scope == "memory") {
        if !modes.contains(&row.mode.as_str()) {
            modes.push(&row.mode);
        }
    }
    for mode in &modes {
        let mut groups: Vec<String> = Vec::new();
        for row in r.rows.iter().filter(|x| x.scope == "memory" && x.mode == *mode) {
            let g = group_of(&row.id).to_string();
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        let mut series = Vec::new();
        let mut eff = Vec::new();
        for g in &groups {
            let rows: Vec<&Row> = r.rows.iter().filter(|x| x.scope == "memory" && group_of(&x.id) == g.as_str()).collect();
            let f = rows[0];
            let layout = if f.layout == "one file" { "one file".to_string() } else { "interleaved".to_string() };
            let name = format!("{} {}-{} {} {}", f.buffer, f.mode, f.key_bits, f.direction, layout);
            series.push(Series { name: name.clone(), points: rows.iter().map(|x| (x.threads, x.id.clone(), x.gb_per_s.median, x.gb_per_s.min, x.gb_per_s.max)).collect() });
            let e: Vec<_> = rows.iter().filter_map(|x| x.efficiency.map(|v| (x.threads, x.id.clone(), v, v, v))).collect();
            if !e.is_empty() {
                eff.push(Series { name, points: e });
            }
        }
        let hlines: Vec<HLine> = r
            .peers
            .iter()
            .filter(|p| p.scope == "openssl" && p.mode == *mode)
            .map(|p| HLine { name: format!("openssl {}-{} {} {}t", p.mode, p.key_bits, p.direction, p.threads), id: p.id.clone(), value: p.gb_per_s.median })
            .collect();
        let _ = writeln!(o, "<h2>{} in memory</h2>\n<div>", esc(&mode.to_uppercase()));
        o.push_str(&chart(&format!("{} throughput vs threads (GB/s)", mode.to_uppercase()), "GB/s", ladder, &series, &hlines, "gb_per_s", true));
        o.push_str(&chart(&format!("{} scaling efficiency", mode.to_uppercase()), "efficiency", ladder, &eff, &[], "efficiency", false));
        o.push_str("</div>\n");
    }
    // Tables.
    let _ = writeln!(o, "<h2>All rows</h2>");
    o.push_str("<table class=\"rows\"><tr><th class=\"l\">case</th><th class=\"l\">scope</th><th class=\"l\">mode</th><th>key</th><th class=\"l\">direction</th><th class=\"l\">layout</th><th>threads</th><th class=\"l\">kernel</th><th>median GB/s</th><th>min</th><th>max</th><th>spread</th><th>efficiency</th><th class=\"l\">peer</th><th>× peer</th></tr>\n");
    for row in &r.rows {
        let _ = writeln!(
            o,
            "<tr data-case=\"{id}\"><td class=\"l\">{}</td><td class=\"l\">{} ({})</td><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td>{}{}<td class=\"l\">{}</td>{}</tr>",
            breakable(&row.id),
            esc(&row.scope),
            esc(&row.buffer),
            esc(&row.mode),
            row.key_bits,
            esc(&row.direction),
            esc(&row.layout),
            row.threads,
            esc(&row.kernel),
            gbps_cells(row),
            opt_cell(&row.id, "efficiency", row.efficiency, true),
            breakable(row.peer.as_deref().unwrap_or("none")),
            opt_cell(&row.id, "ratio_to_peer", row.ratio_to_peer, false),
            id = esc(&row.id)
        );
    }
    o.push_str("</table>\n<h2>Peers</h2>\n<table class=\"peers\"><tr><th class=\"l\">case</th><th class=\"l\">program</th><th>median GB/s</th><th>min</th><th>max</th><th>spread</th></tr>\n");
    for p in &r.peers {
        let _ = writeln!(o, "<tr data-case=\"{id}\"><td class=\"l\">{id}</td><td class=\"l\">{}</td>{}</tr>", esc(&p.kernel), gbps_cells(p), id = esc(&p.id));
    }
    if r.peers.is_empty() {
        o.push_str("<tr><td class=\"l\" colspan=\"6\">none run</td></tr>\n");
    }
    o.push_str("</table>\n");
    if !r.rows.iter().any(|x| x.scope == "s3") {
        o.push_str("<p>S3 rows: not measured (<code>--to s3://bucket/prefix/</code> measures them).</p>\n");
    }
    o.push_str("<h2>Raw JSON</h2>\n<p>Embedded below in <code>script#bench-json</code>; <code>sealpipe bench --compare</code> and <code>--plan</code> read the same JSON (<code>--json</code>).</p>\n");
    let _ = writeln!(o, "<script type=\"application/json\" id=\"bench-json\">{}</script>\n</body>\n</html>", script_json(json));
    o
}

/// Runs side by side; `json` is the comparison's JSON, embedded.
pub fn comparison(c: &Comparison, json: &str) -> String {
    let mut o = head("sealpipe bench --compare");
    o.push_str("<h1>sealpipe bench: comparison</h1>\n<table class=\"runs\"><tr><th>#</th><th class=\"l\">run</th><th class=\"l\">CPU</th><th>CPUs</th><th class=\"l\">command</th></tr>\n");
    for (i, r) in c.runs.iter().enumerate() {
        let _ = writeln!(o, "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td class=\"l\"><code>{}</code></td></tr>", i + 1, esc(&r.label), esc(&r.cpu_model), r.cpus, esc(&r.command));
    }
    o.push_str("</table>\n<p>Median GB/s per case; ratio = the run's median / run 1's. Cases are matched by id; – where a run lacks the case.</p>\n<table class=\"compare\"><tr><th class=\"l\">case</th>");
    for i in 0..c.runs.len() {
        let _ = write!(o, "<th>run {} GB/s</th>", i + 1);
        if i > 0 {
            let _ = write!(o, "<th>run {} / run 1</th>", i + 1);
        }
    }
    o.push_str("</tr>\n");
    for row in &c.rows {
        let _ = write!(o, "<tr data-case=\"{id}\"><td class=\"l\">{id}</td>", id = esc(&row.id));
        for (i, m) in row.medians.iter().enumerate() {
            o.push_str(&opt_cell(&row.id, &format!("median-{i}"), *m, false));
            if i > 0 {
                o.push_str(&opt_cell(&row.id, &format!("ratio-{i}"), row.ratios[i], false));
            }
        }
        o.push_str("</tr>\n");
    }
    let _ = writeln!(o, "</table>\n<script type=\"application/json\" id=\"bench-json\">{}</script>\n</body>\n</html>", script_json(json));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of attribute `name` in the tag text `tag`.
    fn attr(tag: &str, name: &str) -> f64 {
        let at = tag.find(&format!(" {name}=\"")).unwrap_or_else(|| panic!("no {name} in {tag}")) + name.len() + 3;
        tag[at..].split('"').next().unwrap().parse().unwrap()
    }

    #[test]
    fn the_legend_fits_the_picture_one_entry_a_line() {
        let long = "large ctr-256 encrypt one file";
        let series = [long, "large ctr-256 decrypt interleaved", "small ctr-256 encrypt one file"]
            .iter()
            .map(|n| Series { name: n.to_string(), points: vec![(1, format!("{n}/1t"), 1.0, 0.9, 1.1), (2, format!("{n}/2t"), 1.9, 1.8, 2.0)] })
            .collect::<Vec<_>>();
        // Two peers of nearly the same value: their lines are 0.12 px apart.
        let hlines = [
            HLine { name: "openssl ctr-256 encrypt 1t".into(), id: "openssl/a".into(), value: 1.5 },
            HLine { name: "openssl ctr-256 encrypt 2t".into(), id: "openssl/b".into(), value: 1.5005 },
        ];
        let svg = chart("CTR throughput vs threads (GB/s)", "GB/s", &[1, 2], &series, &hlines, "gb_per_s", true);
        let open = &svg[..svg.find('>').unwrap()];
        let (w, h) = (attr(open, "width"), attr(open, "height"));
        assert!(svg.contains(&format!("viewBox=\"0 0 {w} {h}\"")), "{open}");
        let legend: Vec<(f64, f64, &str)> = svg
            .split("<text class=\"legend\"")
            .skip(1)
            .map(|t| {
                let tag = &t[..t.find('>').unwrap()];
                let text = t[t.find('>').unwrap() + 1..].split("</text>").next().unwrap();
                (attr(tag, "x"), attr(tag, "y"), text)
            })
            .collect();
        assert_eq!(legend.len(), 5, "every series and peer named once: {svg}");
        for (x, y, text) in &legend {
            assert!(x + text_width(text) <= w, "{text:?} ends at {} in a {w}-px picture", x + text_width(text));
            assert!(*y <= h - 4.0, "{text:?} below the picture");
        }
        let mut ys: Vec<f64> = legend.iter().map(|l| l.1).collect();
        ys.sort_by(f64::total_cmp);
        for pair in ys.windows(2) {
            assert!(pair[1] - pair[0] >= 11.0, "labels closer than a line: {ys:?}");
        }
        // Many entries: the picture grows to hold them.
        let many: Vec<Series> = (0..30).map(|i| Series { name: format!("series {i}"), points: vec![(1, format!("s{i}"), 1.0, 1.0, 1.0)] }).collect();
        let svg = chart("t", "GB/s", &[1], &many, &[], "gb_per_s", false);
        let h = attr(&svg[..svg.find('>').unwrap()], "height");
        let last = svg.rsplit("<text class=\"legend\"").next().unwrap();
        assert!(attr(&last[..last.find('>').unwrap()], "y") <= h - 4.0);
    }
}
