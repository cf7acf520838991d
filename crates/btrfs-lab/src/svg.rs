//! Minimal SVG charts for the lab report (grouped bars). Hand-written: the plotting
//! crates lay out text through system fonts (font-kit), which a headless CI machine may lack,
//! and this chart needs nothing more than rectangles, lines and text.

use std::fmt::Write;

const PALETTE: [&str; 14] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
    "#1b1b6f", "#8c1a1a", "#2e7d32", "#ff00ff",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

fn fmt_tick(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// An SVG document of `w` by `h` on white, with `title` centred at `title_x`.
fn svg_start(w: f64, h: f64, title: &str, title_x: f64) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = write!(s, r#"<text x="{title_x}" y="22" font-size="16" text-anchor="middle">{}</text>"#, esc(title));
    s
}

/// A grouped bar chart: one group per category, one bar per series.
pub fn bars(title: &str, y_label: &str, categories: &[String], series: &[(String, Vec<f64>)]) -> String {
    let (w, h) = (960.0, 480.0);
    let (l, r, t, b) = (70.0, 190.0, 40.0, 70.0);
    let pw = w - l - r;
    let ph = h - t - b;
    let max = nice_max(series.iter().flat_map(|s| s.1.iter().copied()).filter(|v| v.is_finite()).fold(0.0, f64::max));
    let mut s = svg_start(w, h, title, l + pw / 2.0);
    for i in 0..=5 {
        let v = max * i as f64 / 5.0;
        let y = t + ph - ph * i as f64 / 5.0;
        let _ = write!(s, r##"<line x1="{l}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/>"##, l + pw);
        let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, l - 6.0, y + 4.0, fmt_tick(v));
    }
    let _ = write!(
        s,
        r#"<text transform="translate(16,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        t + ph / 2.0,
        esc(y_label)
    );
    let groups = categories.len().max(1) as f64;
    let gw = pw / groups;
    let bw = (gw * 0.8) / series.len().max(1) as f64;
    for (ci, cat) in categories.iter().enumerate() {
        let gx = l + gw * ci as f64 + gw * 0.1;
        for (si, (_, vals)) in series.iter().enumerate() {
            let v = vals.get(ci).copied().unwrap_or(f64::NAN);
            if !v.is_finite() {
                continue;
            }
            let bh = ph * (v / max).min(1.0);
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                gx + bw * si as f64,
                t + ph - bh,
                bw.max(1.0) - 1.0,
                bh,
                PALETTE[si % PALETTE.len()],
                esc(cat),
                fmt_tick(v)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            gx + gw * 0.4,
            t + ph + 18.0,
            esc(cat)
        );
    }
    let _ = write!(s, r##"<line x1="{l}" x2="{l}" y1="{t}" y2="{}" stroke="#333"/>"##, t + ph);
    let _ = write!(s, r##"<line x1="{l}" x2="{}" y1="{}" y2="{}" stroke="#333"/>"##, l + pw, t + ph, t + ph);
    for (si, (name, _)) in series.iter().enumerate() {
        let y = t + 10.0 + 18.0 * si as f64;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            w - r + 14.0,
            y - 10.0,
            PALETTE[si % PALETTE.len()],
            w - r + 32.0,
            y,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A scatter plot: one labelled point per entry `(label, x, y)`, axes from zero.
pub fn scatter(title: &str, x_label: &str, y_label: &str, points: &[(String, f64, f64)]) -> String {
    let (w, h) = (960.0, 480.0);
    let (l, r, t, b) = (90.0, 40.0, 40.0, 60.0);
    let (pw, ph) = (w - l - r, h - t - b);
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let xmax = nice_max(points.iter().map(|p| finite(p.1)).fold(0.0, f64::max));
    let ymax = nice_max(points.iter().map(|p| finite(p.2)).fold(0.0, f64::max));
    let mut s = svg_start(w, h, title, l + pw / 2.0);
    for i in 0..=5 {
        let (fx, fy) = (xmax * i as f64 / 5.0, ymax * i as f64 / 5.0);
        let x = l + pw * i as f64 / 5.0;
        let y = t + ph - ph * i as f64 / 5.0;
        let _ = write!(s, r##"<line x1="{l}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/>"##, l + pw);
        let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, l - 6.0, y + 4.0, fmt_tick(fy));
        let _ = write!(s, r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#, t + ph + 16.0, fmt_tick(fx));
    }
    let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, l + pw / 2.0, h - 14.0, esc(x_label));
    let _ = write!(
        s,
        r#"<text transform="translate(16,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        t + ph / 2.0,
        esc(y_label)
    );
    for (i, (label, x, y)) in points.iter().enumerate() {
        let cx = l + pw * finite(*x) / xmax;
        let cy = t + ph - ph * finite(*y) / ymax;
        let c = PALETTE[i % PALETTE.len()];
        let _ =
            write!(s, r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="5" fill="{c}"><title>{}</title></circle>"#, esc(label));
        let _ = write!(s, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, cx + 8.0, cy - 6.0, esc(label));
    }
    let _ = write!(s, r##"<line x1="{l}" x2="{l}" y1="{t}" y2="{}" stroke="#333"/>"##, t + ph);
    let _ = write!(s, r##"<line x1="{l}" x2="{}" y1="{}" y2="{}" stroke="#333"/>"##, l + pw, t + ph, t + ph);
    s.push_str("</svg>\n");
    s
}
