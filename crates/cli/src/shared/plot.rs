//! PNG timelines of a simulated run: replicas (desired, ready, existing),
//! backlog and window QoS per control interval.
//!
//! Text is drawn with plotters' `ab_glyph` backend from a TrueType font read
//! at run time (no fontconfig needed): `FARMCTL_FONT` if set, else the first
//! of a few common system paths. Without a font the command fails with a
//! message saying how to provide one.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use farm_sim::RunMetrics;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

static FONT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Load and register the font once per process.
pub(crate) fn ensure_font() -> Result<()> {
    let r = FONT.get_or_init(|| {
        let path = match std::env::var_os("FARMCTL_FONT") {
            Some(p) => PathBuf::from(p),
            None => FONT_CANDIDATES.iter().map(PathBuf::from).find(|p| p.is_file()).ok_or_else(|| {
                format!(
                    "no TrueType font found for plot text (looked in {}); set FARMCTL_FONT to a .ttf file",
                    FONT_CANDIDATES.join(", ")
                )
            })?,
        };
        let bytes = std::fs::read(&path).map_err(|e| format!("reading font {}: {e}", path.display()))?;
        // plotters keeps registered fonts for the whole process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a usable TrueType/OpenType font", path.display()))?;
        Ok(path)
    });
    match r {
        Ok(_) => Ok(()),
        Err(e) => bail!("{e}"),
    }
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing plot: {e}")
}

/// A line of a chart: label, colour, width, points.
pub type Line<'a> = (&'a str, RGBColor, u32, Vec<(f64, f64)>);

/// Draws `lines` on `chart` in the order given (widest first keeps
/// coinciding lines visible), each with its legend entry, then the legend
/// box in the upper right with `font_size` px text. The error is plotters'
/// message, for the caller to place.
pub fn draw_lines<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    lines: Vec<Line<'_>>,
    font_size: u32,
) -> Result<(), String> {
    for (label, color, width, pts) in lines {
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(width)))
            .map_err(|e| e.to_string())?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", font_size))
        .draw()
        .map_err(|e| e.to_string())
}

/// Draw the timeline of `m` into a PNG at `path`.
pub fn timeline(path: &Path, title: &str, m: &RunMetrics) -> Result<()> {
    ensure_font()?;
    let tl = &m.timeline;
    if tl.is_empty() {
        bail!("the run has no timeline to plot");
    }
    let t_max = tl.last().map_or(1.0, |p| p.t_s).max(m.end_s).max(1.0);
    let rep_max = tl
        .iter()
        .map(|p| p.desired.max(p.alive).max(p.ready))
        .max()
        .unwrap_or(1)
        .max(1);
    let backlog_max = tl.iter().map(|p| p.backlog).max().unwrap_or(1).max(1);

    let root = BitMapBackend::new(path, (1100, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 24)).map_err(err)?;
    let panels = root.split_evenly((3, 1));

    // Step shape: the value at a tick holds over the interval that follows.
    let steps = |f: &dyn Fn(usize) -> f64| -> Vec<(f64, f64)> {
        let mut v = Vec::with_capacity(tl.len() * 2);
        for (i, p) in tl.iter().enumerate() {
            let next = tl.get(i + 1).map_or(t_max, |q| q.t_s);
            v.push((p.t_s, f(i)));
            v.push((next, f(i)));
        }
        v
    };

    let mut c = ChartBuilder::on(&panels[0])
        .caption("replicas", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..t_max, 0f64..f64::from(rep_max) * 1.1)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("time (s)")
        .y_desc("replicas")
        .draw()
        .map_err(err)?;
    // Drawn widest first so that coinciding lines stay visible.
    let lines = vec![
        (
            "existing (paid)",
            RED,
            5,
            steps(&|i| f64::from(tl[i].alive)),
        ),
        ("ready", GREEN, 3, steps(&|i| f64::from(tl[i].ready))),
        ("desired", BLUE, 1, steps(&|i| f64::from(tl[i].desired))),
    ];
    draw_lines(&mut c, lines, 14).map_err(err)?;

    let mut c = ChartBuilder::on(&panels[1])
        .caption("backlog (queued tasks at each tick)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..t_max, 0f64..f64::from(backlog_max) * 1.1)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("time (s)")
        .y_desc("tasks")
        .draw()
        .map_err(err)?;
    c.draw_series(LineSeries::new(
        tl.iter().map(|p| (p.t_s, f64::from(p.backlog))),
        BLACK.stroke_width(2),
    ))
    .map_err(err)?;

    let mut c = ChartBuilder::on(&panels[2])
        .caption(
            format!("window QoS (run: {:.2} %)", m.qos * 100.0),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..t_max, 0f64..105f64)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("time (s)")
        .y_desc("% on time")
        .draw()
        .map_err(err)?;
    let q: Vec<(f64, f64)> = tl
        .iter()
        .filter_map(|p| p.window_qos.map(|q| (p.t_s, q * 100.0)))
        .collect();
    c.draw_series(LineSeries::new(q.iter().copied(), MAGENTA.stroke_width(2)))
        .map_err(err)?;
    c.draw_series(
        q.iter()
            .map(|&(x, y)| Circle::new((x, y), 3, MAGENTA.filled())),
    )
    .map_err(err)?;

    root.present()
        .map_err(err)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
