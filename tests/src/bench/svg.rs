//! The benchmark's picture: one isoroot boot phase by phase (from isoroot's timings file),
//! then one bar per compared boot, on a common time axis.

use std::fmt::Write;

const WIDTH: f64 = 860.0;
const LEFT: f64 = 270.0;
const BAR: f64 = 22.0;
const COLORS: &[&str] =
    &["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7"];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `timings` is isoroot's timings.json from the boot drawn phase by phase, `uptime` when its
/// init started; `totals` are (name, seconds) of every compared boot.
pub fn timeline(timings: Option<&serde_json::Value>, uptime: f64, totals: &[(&str, f64)]) -> String {
    let max = totals.iter().map(|t| t.1).fold(uptime, f64::max).max(0.1);
    let scale = (WIDTH - LEFT - 60.0) / max;
    let x = |secs: f64| LEFT + secs * scale;
    let height = 70.0 + BAR * 1.6 * (totals.len() as f64 + 2.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let mut y = 20.0;
    let _ = writeln!(
        s,
        "<text x=\"10\" y=\"{y}\" font-weight=\"bold\">seconds from kernel start to the root's init</text>"
    );
    y += 20.0;
    // The phases: the kernel until isoroot starts, isoroot's phases, the exec.
    let mut segments: Vec<(String, f64, f64)> = Vec::new();
    if let Some(t) = timings {
        let us = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0) / 1e6;
        let start = us(&t["start_us"]);
        segments.push(("kernel".into(), 0.0, start));
        for p in t["phases"].as_array().into_iter().flatten() {
            segments.push((p["name"].as_str().unwrap_or("?").into(), us(&p["start_us"]), us(&p["end_us"])));
        }
        segments.push(("exec".into(), us(&t["end_us"]), uptime));
    }
    let _ = writeln!(s, "<text x=\"10\" y=\"{}\">isoroot, extent hints: phases</text>", y + 15.0);
    for (i, (name, from, to)) in segments.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let w = ((to - from) * scale).max(1.0);
        let _ = writeln!(
            s,
            "<rect x=\"{:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"{BAR}\" fill=\"{color}\"><title>{} {:.3} s</title></rect>",
            x(*from),
            escape(name),
            to - from
        );
        // Labels below the bar, staggered so that short phases stay readable.
        let ly = y + BAR + 14.0 + 13.0 * (i % 2) as f64;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{ly}\" font-size=\"10\" fill=\"{color}\">{} {:.2}</text>",
            x(*from),
            escape(name),
            to - from
        );
    }
    y += BAR * 1.6 + 30.0;
    for (name, total) in totals {
        let _ = writeln!(s, "<text x=\"10\" y=\"{}\">{}</text>", y + 15.0, escape(name));
        let _ = writeln!(
            s,
            "<rect x=\"{LEFT}\" y=\"{y}\" width=\"{:.1}\" height=\"{BAR}\" fill=\"#9aa5b1\"/>",
            total * scale
        );
        let _ = writeln!(s, "<text x=\"{:.1}\" y=\"{}\">{total:.2} s</text>", x(*total) + 5.0, y + 15.0);
        y += BAR * 1.6;
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_phases_and_totals() {
        let t = serde_json::json!({"start_us": 1_000_000, "end_us": 1_500_000, "vmhwm_kib": 2000,
            "phases": [{"name": "modules", "start_us": 1_000_000, "end_us": 1_200_000},
                       {"name": "attach", "start_us": 1_200_000, "end_us": 1_500_000}]});
        let svg = super::timeline(Some(&t), 1.6, &[("isoroot", 1.6), ("live-boot <x>", 12.0)]);
        assert!(svg.contains("<title>modules 0.200 s</title>"));
        assert!(svg.contains("live-boot &lt;x&gt;"));
        assert!(svg.contains("12.00 s"));
    }
}
