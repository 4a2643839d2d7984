//! The overview's chart: activities written per minute per platform over the last hour, as an
//! inline SVG (no script, no assets).

use std::collections::BTreeMap;

use chrono::{DurationRound, Utc};
use maud::{Markup, html};
use tributary::store::overview::ActivityRate;

use super::layout::PALETTE;

const W: f64 = 1060.0;
const H: f64 = 200.0;
const PAD: f64 = 34.0;
const MINUTES: i64 = 60;

pub fn activity_chart(rates: &[ActivityRate]) -> Markup {
    let now = Utc::now()
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap_or_else(|_| Utc::now());
    let mut series: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for rate in rates {
        let back = (now - rate.minute).num_minutes();
        if !(0..MINUTES).contains(&back) {
            continue;
        }
        let slot = (MINUTES - 1 - back) as usize;
        series
            .entry(rate.platform.as_str())
            .or_insert_with(|| vec![0; MINUTES as usize])[slot] += rate.activities;
    }
    let max = series
        .values()
        .flat_map(|v| v.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let x = |i: usize| PAD + (W - PAD - 8.0) * i as f64 / (MINUTES - 1) as f64;
    let y = |v: i64| H - PAD + 10.0 - (H - PAD) * v as f64 / max as f64;
    html! {
        svg viewBox={ "0 0 " (W) " " (H + 10.0) } width="100%" role="img" aria-label="activities per minute per platform" {
            @for frac in [0.0, 0.5, 1.0] {
                @let v = (max as f64 * frac).round() as i64;
                line x1=(PAD) x2=(W - 8.0) y1=(y(v)) y2=(y(v)) stroke="#e4e7ef" {}
                text x=(PAD - 6.0) y=(y(v) + 4.0) text-anchor="end" font-size="11" fill="#6b7385" { (v) }
            }
            text x=(PAD) y=(H + 8.0) font-size="11" fill="#6b7385" { "60 min ago" }
            text x=(W - 8.0) y=(H + 8.0) font-size="11" fill="#6b7385" text-anchor="end" { "now" }
            @for (i, (_, values)) in series.iter().enumerate() {
                @let points: Vec<String> = values.iter().enumerate().map(|(j, v)| format!("{:.1},{:.1}", x(j), y(*v))).collect();
                polyline points=(points.join(" ")) fill="none" stroke=(PALETTE[i % PALETTE.len()]) stroke-width="2.2" stroke-linejoin="round" {}
            }
        }
        div.legend {
            @if series.is_empty() { span.muted { "No activity written in the last hour." } }
            @for (i, (platform, values)) in series.iter().enumerate() {
                span { i style={ "background:" (PALETTE[i % PALETTE.len()]) } {} (platform) " · " (values.iter().sum::<i64>()) " in the hour" }
            }
        }
    }
}
