//! The training curves of `examples/mnist.rs` as a PNG: training loss per step (raw and a
//! moving mean) and test accuracy per epoch, each with a title, labelled axes with ticks,
//! a grid and a legend. Text is drawn with DejaVu Sans, embedded from the `dejavu` crate and
//! rendered by plotters' `ab_glyph` (no system fonts needed).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;
use std::error::Error;
use std::path::Path;
use std::sync::Once;

/// Registers the embedded font as "sans-serif" (once per process).
fn register_font() -> Result<(), Box<dyn Error>> {
    static ONCE: Once = Once::new();
    let mut ok = true;
    ONCE.call_once(|| {
        ok = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        )
        .is_ok()
            && plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold())
                .is_ok();
    });
    if ok {
        Ok(())
    } else {
        Err("the embedded DejaVu Sans font does not load".into())
    }
}

/// Mean of the last `w` values at each step (fewer at the start).
fn moving_mean(xs: &[f32], w: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(xs.len());
    let mut sum = 0.0f64;
    for (i, &x) in xs.iter().enumerate() {
        sum += f64::from(x);
        if i >= w {
            sum -= f64::from(xs[i - w]);
        }
        out.push((sum / (i + 1).min(w) as f64) as f32);
    }
    out
}

/// Draws `losses` (one per step; `steps_per_epoch` marks epoch boundaries) and `accuracies`
/// (one per epoch, in [0, 1], the first being `first_epoch`) side by side into `path`.
pub fn plot_curves(
    path: &Path,
    losses: &[f32],
    accuracies: &[f64],
    steps_per_epoch: usize,
    first_epoch: usize,
) -> Result<(), Box<dyn Error>> {
    register_font()?;
    let root = BitMapBackend::new(path, (1280, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(700);
    let title = ("sans-serif", 24).into_font().style(FontStyle::Bold);
    let axis = ("sans-serif", 18).into_font();
    let labels = ("sans-serif", 15).into_font();

    // Loss per step.
    let window = 50.min(losses.len()).max(1);
    let mean = moving_mean(losses, window);
    let finite = losses.iter().copied().filter(|l| l.is_finite());
    let top = finite.fold(0.0f32, f32::max).max(1e-3) * 1.05;
    let steps = losses.len().max(1);
    let mut c = ChartBuilder::on(&left)
        .caption("Training loss", title.clone())
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0..steps, 0f32..top)?;
    c.configure_mesh()
        .x_desc("step")
        .y_desc("cross-entropy loss")
        .axis_desc_style(axis.clone())
        .label_style(labels.clone())
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    if steps_per_epoch > 0 {
        let boundaries = (1..)
            .map(|e| e * steps_per_epoch)
            .take_while(|&s| s < losses.len());
        c.draw_series(
            boundaries.map(|s| PathElement::new(vec![(s, 0.0), (s, top)], RGBColor(160, 160, 160))),
        )?;
    }
    let raw = RGBColor(150, 190, 235);
    c.draw_series(LineSeries::new(
        losses.iter().enumerate().map(|(i, &l)| (i, l)),
        raw,
    ))?
    .label("loss per step")
    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], raw.stroke_width(3)));
    c.draw_series(LineSeries::new(
        mean.iter().enumerate().map(|(i, &l)| (i, l)),
        BLUE.stroke_width(2),
    ))?
    .label(format!("mean of the last {window} steps"))
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(3)));
    c.configure_series_labels()
        .label_font(labels.clone())
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;

    // Test accuracy per epoch, in percent.
    let pct: Vec<(f64, f64)> = accuracies
        .iter()
        .enumerate()
        .map(|(i, &a)| ((first_epoch + i) as f64, 100.0 * a))
        .collect();
    let lo = pct.iter().map(|p| p.1).fold(100.0, f64::min);
    let lo = (lo - (100.0 - lo).max(0.5) * 0.5).clamp(0.0, 99.5).floor();
    let (x0, x1) = (
        first_epoch as f64 - 0.5,
        (first_epoch + accuracies.len().max(1)) as f64 - 0.5,
    );
    let mut c = ChartBuilder::on(&right)
        .caption("Test accuracy", title)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, lo..100.0f64)?;
    let whole = |x: &f64| {
        if (x - x.round()).abs() < 1e-6 {
            format!("{:.0}", x)
        } else {
            String::new()
        }
    };
    c.configure_mesh()
        .x_desc("epoch")
        .y_desc("accuracy on the 10,000 test images (%)")
        .axis_desc_style(axis)
        .label_style(labels.clone())
        .x_labels(4 * accuracies.len().max(1) + 1)
        .x_label_formatter(&whole)
        .y_label_formatter(&|y| format!("{y:.1}"))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    c.draw_series(LineSeries::new(pct.iter().copied(), RED.stroke_width(2)))?
        .label("test accuracy")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(3)));
    c.draw_series(pct.iter().map(|&p| Circle::new(p, 5, RED.filled())))?;
    c.draw_series(pct.iter().map(|&(e, a)| {
        Text::new(
            format!("{a:.2}%"),
            (e, a),
            TextStyle::from(labels.clone()).pos(Pos::new(HPos::Center, VPos::Bottom)),
        )
    }))?;
    c.configure_series_labels()
        .label_font(labels)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}
