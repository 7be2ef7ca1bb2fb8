//! The soak's figures as a small SVG, written by hand (polylines, no plotting crate): five
//! panels over time (memory, the bounded tables, latency, projection backlog and pool
//! waits, other processes' CPU), with the warm-up third shaded and the thirds' boundaries
//! dashed.

use std::fmt::Write as _;

use super::sample::{BOUNDED, Sample};
use super::verdict::thirds;

const WIDTH: f64 = 760.0;
const PANEL: f64 = 150.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
/// Room above each panel for its title and legend, and below the last for the time axis.
const TITLE: f64 = 30.0;
const AXIS: f64 = 34.0;
const COLORS: [&str; 3] = ["#1f77b4", "#d62728", "#2ca02c"];

struct Panel {
    title: &'static str,
    series: Vec<(String, Vec<f64>)>,
    /// A logarithmic scale from 1 (for latency, where one stall of seconds would flatten
    /// every other sample on a linear one).
    log: bool,
}

/// Where `value` goes on a panel of height [`PANEL`] whose top is `max`: the distance up
/// from its bottom.
fn rise(value: f64, max: f64, log: bool) -> f64 {
    if log {
        PANEL * value.max(1.0).log10() / max.log10()
    } else {
        PANEL * value / max
    }
}

/// The SVG of `samples` (at least two).
pub(super) fn svg(samples: &[Sample]) -> String {
    let panels = [
        Panel {
            title: "server memory, VmRSS (MiB)",
            series: vec![("VmRSS".to_owned(), values(samples, Sample::rss_mib))],
            log: false,
        },
        Panel {
            title: "rows of the tables that must stay bounded",
            series: BOUNDED
                .iter()
                .enumerate()
                .map(|(i, table)| (table.to_string(), values(samples, |s| s.bounded[i] as f64)))
                .collect(),
            log: false,
        },
        Panel {
            title: "latency of each sample's requests, every route (ms, logarithmic)",
            series: vec![
                ("p99".to_owned(), values(samples, |s| ms(s.p99()))),
                ("p50".to_owned(), values(samples, |s| ms(s.quantile(0.5)))),
            ],
            log: true,
        },
        Panel {
            title: "projection backlog (events) and pool waits (requests)",
            series: vec![
                ("backlog".to_owned(), values(samples, |s| s.lag_events)),
                ("pool waits".to_owned(), values(samples, |s| s.pool_waiting)),
            ],
            log: false,
        },
        Panel {
            title: "CPU other processes on the machine took (% of all cores)",
            series: vec![(
                "other processes".to_owned(),
                values(samples, |s| s.others_cpu * 100.0),
            )],
            log: false,
        },
    ];
    let height = panels.len() as f64 * (PANEL + TITLE) + AXIS;
    let end = samples.last().map_or(1.0, |s| s.at.as_secs_f64()).max(1.0);
    let x = |seconds: f64| LEFT + (WIDTH - LEFT - RIGHT) * seconds / end;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let _ = writeln!(
        out,
        "<rect width=\"{WIDTH}\" height=\"{height}\" fill=\"white\"/>"
    );
    let (middle, last) = thirds(samples);
    let bounds = [middle.first(), last.first()].map(|s| s.map_or(0.0, |s| x(s.at.as_secs_f64())));
    for (p, panel) in panels.iter().enumerate() {
        let top = p as f64 * (PANEL + TITLE) + TITLE;
        let bottom = top + PANEL;
        let max = panel
            .series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.0, f64::max)
            .max(if panel.log { 10.0 } else { 1.0 })
            * 1.1;
        let y = |value: f64| bottom - rise(value, max, panel.log);
        let _ = writeln!(
            out,
            "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{:.1}\" height=\"{PANEL}\" fill=\"#eee\"/>",
            bounds[0] - LEFT
        );
        for bound in bounds {
            let _ = writeln!(
                out,
                "<line x1=\"{bound:.1}\" y1=\"{top}\" x2=\"{bound:.1}\" y2=\"{bottom}\" \
                 stroke=\"#999\" stroke-dasharray=\"4 3\"/>"
            );
        }
        let _ = writeln!(
            out,
            "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{:.1}\" height=\"{PANEL}\" fill=\"none\" \
             stroke=\"#666\"/>",
            WIDTH - LEFT - RIGHT
        );
        let _ = writeln!(
            out,
            "<text x=\"{LEFT}\" y=\"{:.1}\" font-weight=\"bold\">{}</text>",
            top - 16.0,
            panel.title
        );
        let ticks: Vec<f64> = if panel.log {
            (0..=max.log10().floor() as i32)
                .map(|k| 10f64.powi(k))
                .collect()
        } else {
            vec![0.0, max / 2.0, max]
        };
        for value in ticks {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT - 4.0,
                y(value) + 4.0,
                label(value)
            );
        }
        let mut legend = LEFT;
        for ((name, values), color) in panel.series.iter().zip(COLORS) {
            let points: Vec<String> = samples
                .iter()
                .zip(values)
                .map(|(s, v)| format!("{:.1},{:.1}", x(s.at.as_secs_f64()), y(*v)))
                .collect();
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
                points.join(" ")
            );
            let _ = writeln!(
                out,
                "<text x=\"{legend:.1}\" y=\"{:.1}\" fill=\"{color}\">{name}</text>",
                top - 4.0
            );
            legend += 8.0 + 6.5 * name.len() as f64;
        }
    }
    let axis = height - AXIS + 14.0;
    for k in 0..=4 {
        let seconds = end * f64::from(k) / 4.0;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{axis:.1}\" text-anchor=\"middle\">{seconds:.0} s</text>",
            x(seconds)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"{:.1}\">time since the soak started; shaded: warm-up (not \
         judged); dashed: the middle and the last third, which are compared</text>",
        axis + 14.0
    );
    out.push_str("</svg>\n");
    out
}

fn ms(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn values(samples: &[Sample], figure: impl Fn(&Sample) -> f64) -> Vec<f64> {
    samples.iter().map(figure).collect()
}

/// An axis label: whole numbers, with `k` past ten thousand.
fn label(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn draws_every_series_within_its_panel() {
        let samples: Vec<Sample> = (1..=12)
            .map(|i| {
                let mut sample = Sample::quiet(Duration::from_secs(5 * i));
                let latency = Duration::from_millis(if i == 7 { 9000 } else { 0 });
                sample.window.latencies.insert("GET /x", vec![latency; 3]);
                sample.rss_kib = 60 * 1024 + i;
                sample
            })
            .collect();
        let svg = svg(&samples);
        assert_eq!(
            svg.matches("<polyline").count(),
            1 + BOUNDED.len() + 2 + 2 + 1
        );
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        let height = 5.0 * (PANEL + TITLE) + AXIS;
        for point in svg.split("points=\"").skip(1) {
            let points = &point[..point.find('"').unwrap()];
            for xy in points.split(' ') {
                let (x, y) = xy.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!((LEFT..=WIDTH - RIGHT).contains(&x) && (0.0..=height).contains(&y));
            }
        }
    }
}
