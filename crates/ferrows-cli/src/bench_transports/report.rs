//! What `bench-transports` writes: a line per rate as it goes, and with
//! `--out` the results as JSON, markdown tables and SVG charts.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use super::{BenchTransportsArgs, Transport, TransportRun};

/// Each transport's color in every chart.
fn color(transport: Transport) -> RGBColor {
    match transport {
        Transport::Websocket => RGBColor(0xd9, 0x48, 0x0f),
        Transport::Sse => RGBColor(0x1c, 0x7e, 0xd6),
        Transport::LongPoll => RGBColor(0x2f, 0x9e, 0x44),
        Transport::Poll => RGBColor(0xae, 0x3e, 0xc9),
    }
}

/// Prints a transport's results (stdout), as they come.
pub(super) fn print_run(run: &TransportRun) {
    let idle = &run.idle;
    println!(
        "{}: idle {} subscribers: server CPU {:.2} % ({:.2} µs per subscriber-second), RSS {} per subscriber, \
         {:.1} B/s in and {:.1} B/s out per subscriber, {:.1} requests/s",
        run.transport.name(),
        run.subscribers,
        idle.server_cpu_pct,
        idle.server_cpu_us_per_subscriber_s,
        idle.server_rss_per_subscriber_b.map_or("n/a".to_owned(), |b| format!("{b:.0} B")),
        idle.bytes_in_per_subscriber_s,
        idle.bytes_out_per_subscriber_s,
        idle.requests_per_s
    );
    for r in &run.rates {
        println!(
            "{}: {}/s: {:.0} deliveries/s, latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms, server {:.2} µs per \
             delivery ({:.0} % CPU; generator {:.0} %), {:.1} B in and {:.1} B out per delivery, {:.1} requests/s, \
             missing {}, duplicated {}, out of order {}",
            run.transport.name(),
            r.rate,
            r.deliveries_per_s,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_ms.max,
            r.server_cpu_us_per_delivery,
            r.server_cpu_pct,
            r.generator_cpu_pct,
            r.bytes_in_per_delivery,
            r.bytes_out_per_delivery,
            r.requests_per_s,
            r.missing,
            r.duplicated,
            r.out_of_order
        );
    }
}

/// Writes `transports.json`, `transports.md` and the charts into `out`.
pub(super) fn write(out: &Path, args: &BenchTransportsArgs, runs: &[TransportRun]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    std::fs::write(out.join("transports.json"), serde_json::to_string_pretty(runs)?)?;
    std::fs::write(out.join("transports.md"), tables(args, runs))?;
    for (index, rate) in args.rates.iter().enumerate() {
        let path = out.join(format!("transports-latency-{rate}.svg"));
        latency_chart(&path, *rate, index, runs, args.subscribers).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    per_rate_chart(
        &out.join("transports-cpu.svg"),
        &format!("Server CPU per delivery, {} subscribers", args.subscribers),
        "µs of server CPU per delivery",
        runs,
        |r| vec![r.server_cpu_us_per_delivery],
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    per_rate_chart(
        &out.join("transports-bytes.svg"),
        &format!(
            "Bytes on the wire per delivery, {} subscribers (solid: to clients, dashed: from clients)",
            args.subscribers
        ),
        "bytes per delivery",
        runs,
        |r| vec![r.bytes_in_per_delivery, r.bytes_out_per_delivery],
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    idle_chart(&out.join("transports-idle.svg"), runs, args.subscribers).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

fn tables(args: &BenchTransportsArgs, runs: &[TransportRun]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "{} subscribers per transport, publications of {} bytes for {} s per rate, polling every {} s, long polls \
         of {} s at most, every HTTP connection kept alive, nothing compressed.\n",
        args.subscribers, args.size, args.duration, args.poll_interval, args.long_poll_timeout
    );
    for (index, rate) in args.rates.iter().enumerate() {
        let _ = writeln!(md, "**{rate} publication{}/s**\n", if *rate == 1.0 { "" } else { "s" });
        let _ = writeln!(
            md,
            "| transport | deliveries/s | latency p50 | p99 | max | server CPU per delivery | server CPU | bytes per \
             delivery, to clients | from clients | requests/s | missing / duplicated | load generator CPU |"
        );
        let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for run in runs {
            let Some(r) = run.rates.get(index) else { continue };
            let _ = writeln!(
                md,
                "| {} | {:.0} | {} | {} | {} | {:.2} µs | {:.1} % | {:.0} | {:.0} | {:.0} | {} / {} | {:.0} % |",
                run.transport.name(),
                r.deliveries_per_s,
                ms(r.latency_ms.p50),
                ms(r.latency_ms.p99),
                ms(r.latency_ms.max),
                r.server_cpu_us_per_delivery,
                r.server_cpu_pct,
                r.bytes_in_per_delivery,
                r.bytes_out_per_delivery,
                r.requests_per_s,
                r.missing,
                r.duplicated,
                r.generator_cpu_pct
            );
        }
        md.push('\n');
    }
    let _ = writeln!(md, "**Idle** ({} s, nothing published)\n", args.hold);
    let _ = writeln!(
        md,
        "| transport | server CPU | per subscriber-second | server memory per subscriber | bytes/s per subscriber, \
         to it | from it | requests/s |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- |");
    for run in runs {
        let idle = &run.idle;
        let _ = writeln!(
            md,
            "| {} | {:.2} % | {:.2} µs | {} | {:.1} | {:.1} | {:.0} |",
            run.transport.name(),
            idle.server_cpu_pct,
            idle.server_cpu_us_per_subscriber_s,
            idle.server_rss_per_subscriber_b.map_or("n/a".to_owned(), |b| format!("{:.1} KiB", b / 1024.0)),
            idle.bytes_in_per_subscriber_s,
            idle.bytes_out_per_subscriber_s,
            idle.requests_per_s
        );
    }
    md
}

/// A latency for a table: ms with the precision that matters.
fn ms(value: f64) -> String {
    if value >= 100.0 { format!("{value:.0} ms") } else { format!("{value:.2} ms") }
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// The latency distribution of every transport at one rate: latency by
/// percentile, the percentiles spread as 1/(1 - p) (HdrHistogram's plot).
fn latency_chart(path: &Path, rate: f64, index: usize, runs: &[TransportRun], subscribers: usize) -> Drawn {
    let spread = |p: f64| 1.0 / (1.0 - (p / 100.0).min(0.9999));
    let points: Vec<(Transport, Vec<(f64, f64)>)> = runs
        .iter()
        .filter_map(|run| {
            let r = run.rates.get(index)?;
            Some((run.transport, r.percentiles.iter().map(|&(p, ms)| (spread(p), ms.max(0.01))).collect()))
        })
        .collect();
    let top = points.iter().flat_map(|(_, p)| p.iter().map(|&(_, ms)| ms)).fold(1.0, f64::max) * 2.0;
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!("Latency from publication to receipt, {rate}/s to {subscribers} subscribers");
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d((1.0f64..10_000.0).log_scale(), (0.01f64..top).log_scale())?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("percentile")
        .y_desc("ms")
        .x_label_formatter(&|x| {
            let p = format!("{:.2}", 100.0 * (1.0 - 1.0 / x));
            format!("{}%", p.trim_end_matches('0').trim_end_matches('.'))
        })
        .y_label_formatter(&|y| number(*y))
        .draw()?;
    for (transport, series) in points {
        let style = color(transport).stroke_width(2);
        chart
            .draw_series(LineSeries::new(series, style))?
            .label(transport.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color(transport).stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A value per rate for every transport (one line per value: solid, then
/// dashed), on log scales.
fn per_rate_chart(
    path: &Path,
    title: &str,
    unit: &str,
    runs: &[TransportRun],
    values: impl Fn(&super::RateRun) -> Vec<f64>,
) -> Drawn {
    let rates: Vec<f64> = runs.first().map(|run| run.rates.iter().map(|r| r.rate).collect()).unwrap_or_default();
    let (low, high) = (rates.iter().copied().fold(f64::INFINITY, f64::min), rates.iter().copied().fold(0.0, f64::max));
    let all: Vec<f64> =
        runs.iter().flat_map(|run| run.rates.iter().flat_map(&values)).filter(|v| v.is_finite() && *v > 0.0).collect();
    let (bottom, top) =
        (all.iter().copied().fold(f64::INFINITY, f64::min) / 2.0, all.iter().copied().fold(0.0, f64::max) * 2.0);
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d((low / 1.5..high * 1.5).log_scale(), (bottom.max(1e-3)..top.max(1.0)).log_scale())?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("publications per second")
        .y_desc(unit)
        .x_label_formatter(&|x| number(*x))
        .y_label_formatter(&|y| number(*y))
        .draw()?;
    for run in runs {
        let lines = run.rates.first().map_or(0, |r| values(r).len());
        for line in 0..lines {
            let series: Vec<(f64, f64)> = run
                .rates
                .iter()
                .map(|r| (r.rate, values(r)[line]))
                .filter(|(_, v)| v.is_finite() && *v > 0.0)
                .collect();
            let style = color(run.transport).stroke_width(2);
            let points = series.clone();
            if line == 0 {
                chart.draw_series(LineSeries::new(series, style))?.label(run.transport.name()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color(run.transport).stroke_width(2))
                });
            } else {
                chart.draw_series(DashedLineSeries::new(series, 6, 4, style))?;
            }
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color(run.transport).filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One idle measure of a run, per subscriber.
type IdleValue = fn(&TransportRun) -> f64;

/// The idle cost per subscriber, in three panels: server CPU, server
/// memory, traffic.
fn idle_chart(path: &Path, runs: &[TransportRun], subscribers: usize) -> Drawn {
    let root = SVGBackend::new(path, (900, 360)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, panels) = root.split_vertically(36);
    title.titled(
        &format!("Idle cost per subscriber, {subscribers} subscribers, nothing published"),
        ("sans-serif", 18),
    )?;
    let panels = panels.split_evenly((1, 3));
    let measures: [(&str, IdleValue); 3] = [
        ("server CPU, µs per second", |run| run.idle.server_cpu_us_per_subscriber_s),
        ("server memory, KiB", |run| run.idle.server_rss_per_subscriber_b.unwrap_or(0.0) / 1024.0),
        ("bytes per second, both ways", |run| run.idle.bytes_in_per_subscriber_s + run.idle.bytes_out_per_subscriber_s),
    ];
    for (panel, (unit, value)) in panels.iter().zip(measures.iter()) {
        let top = runs.iter().map(value).fold(0.0, f64::max).max(1e-3) * 1.25;
        let mut chart = ChartBuilder::on(panel)
            .caption(*unit, ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..runs.len() as f64, 0f64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(runs.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let slot = *x - 0.5;
                let index = slot.round();
                if (slot - index).abs() < 0.01 && index >= 0.0 {
                    runs.get(index as usize).map_or(String::new(), |run| short(run.transport).to_owned())
                } else {
                    String::new()
                }
            })
            .draw()?;
        chart.draw_series(runs.iter().enumerate().map(|(i, run)| {
            let x = i as f64;
            Rectangle::new([(x + 0.15, 0.0), (x + 0.85, value(run))], color(run.transport).filled())
        }))?;
    }
    root.present()?;
    Ok(())
}

/// A number for an axis: no trailing zeros.
fn number(value: f64) -> String {
    let text = if value >= 100.0 { format!("{value:.0}") } else { format!("{value:.3}") };
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text }
}

/// A transport's name where room is short.
fn short(transport: Transport) -> &'static str {
    match transport {
        Transport::Websocket => "WebSocket",
        Transport::Sse => "SSE",
        Transport::LongPoll => "long poll",
        Transport::Poll => "poll",
    }
}
