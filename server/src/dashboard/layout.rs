//! The dashboard's frame: the stylesheet, the navigation, and the small pieces every page uses.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

const CSS: &str = r#"
:root{--bg:#f6f7fb;--card:#fff;--ink:#1c2333;--muted:#6b7385;--line:#e4e7ef;--accent:#3a5bd9;
--ok:#1f9d63;--warn:#c98a09;--bad:#d2433f;--idle:#8a93a6}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;
background:var(--bg);color:var(--ink)}
header{background:#141a2b;color:#fff;display:flex;align-items:center;gap:28px;padding:0 28px;height:56px}
header .brand{font-weight:700;font-size:17px;letter-spacing:.3px}header .brand span{color:#7f9cff}
header nav a{color:#c9d1e6;text-decoration:none;margin-right:18px;font-weight:500}
header nav a:hover,header nav a.on{color:#fff}
header .who{margin-left:auto;color:#9aa5c0;font-size:12px}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:22px;margin:4px 0 18px}h2{font-size:15px;margin:0 0 12px;color:#2b3550}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:16px;margin-bottom:20px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px;
box-shadow:0 1px 2px rgba(20,26,43,.04);margin-bottom:20px}
.grid .card{margin-bottom:0}
.stat{font-size:28px;font-weight:700}.label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.5px}
table{width:100%;border-collapse:collapse}th{text-align:left;color:var(--muted);font-weight:600;font-size:12px;
text-transform:uppercase;letter-spacing:.4px;padding:8px 10px;border-bottom:1px solid var(--line)}
td{padding:9px 10px;border-bottom:1px solid var(--line);vertical-align:top}tr:last-child td{border-bottom:0}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
.pill{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:600;color:#fff;background:var(--idle)}
.s-done,.s-processed{background:var(--ok)}.s-error{background:var(--bad)}.s-in-progress,.s-processing{background:var(--accent)}
.s-delayed,.s-pending{background:var(--warn)}.s-disconnected,.s-cancelled{background:var(--idle)}
.bar{height:8px;background:#e9ecf5;border-radius:99px;overflow:hidden;min-width:120px}
.bar i{display:block;height:100%;background:linear-gradient(90deg,#3a5bd9,#6a8bff)}
.bar i.bad{background:var(--bad)}
.muted{color:var(--muted)}.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.chain{margin:0;padding:0;list-style:none}.chain li{padding:6px 10px;border-left:3px solid var(--bad);
background:#fdf3f3;margin-bottom:4px;font-family:ui-monospace,Menlo,monospace;font-size:12px;white-space:pre-wrap}
.chain li+li{border-left-color:#e8a3a1;margin-left:14px}
button,.btn{font:inherit;border:1px solid var(--accent);background:var(--accent);color:#fff;border-radius:7px;
padding:5px 12px;cursor:pointer;font-weight:600}button.ghost{background:#fff;color:var(--accent)}
button.danger{background:#fff;color:var(--bad);border-color:var(--bad)}
form.inline{display:inline}
.flash{background:#e8f6ef;border:1px solid #bfe5d1;color:#13633f;padding:10px 14px;border-radius:8px;margin-bottom:16px}
.login{max-width:420px;margin:80px auto}.login input{width:100%;padding:9px 10px;border:1px solid var(--line);
border-radius:7px;margin:10px 0 14px;font:inherit}
.legend span{display:inline-block;margin-right:14px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;
border-radius:2px;margin-right:5px;vertical-align:middle}
.empty{color:var(--muted);padding:18px 0;text-align:center}
pre.body{white-space:pre-wrap;word-break:break-all;margin:0;max-width:420px}
"#;

/// Colours of the chart's series, one per platform.
pub const PALETTE: [&str; 8] = [
    "#3a5bd9", "#1f9d63", "#c98a09", "#d2433f", "#7a4fd6", "#138a9e", "#c2568f", "#5f6b7a",
];

/// A whole page. `refresh`: seconds between reloads of a live page.
pub fn page(title: &str, nav: &str, who: &str, refresh: Option<u32>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(seconds) = refresh {
                    meta http-equiv="refresh" content=(seconds);
                }
                title { (title) " · Tributary" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    div.brand { "Tributary" span { " ops" } }
                    nav {
                        @for (href, label, key) in [("/", "Overview", "overview"), ("/integrations", "Integrations", "integrations"), ("/runs", "Runs", "runs"), ("/quotas", "Quotas", "quotas"), ("/dead-letters", "Dead letters", "dead-letters")] {
                            a href=(href) class=@if key == nav { "on" } { (label) }
                        }
                    }
                    div.who { (who) }
                }
                main { (body) }
            }
        }
    }
}

pub fn pill(state: &str) -> Markup {
    html! { span class={ "pill s-" (state) } { (state) } }
}

pub fn when(at: Option<DateTime<Utc>>) -> Markup {
    match at {
        None => html! { span.muted { "—" } },
        Some(at) => {
            let secs = (Utc::now() - at).num_seconds();
            let ago = if secs < 0 {
                format!("in {}", span(-secs))
            } else {
                format!("{} ago", span(secs))
            };
            html! { span title=(at.to_rfc3339()) { (ago) } }
        }
    }
}

fn span(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        s => format!("{} d", s / 86_400),
    }
}

/// A progress bar of `done` out of `total`.
pub fn bar(done: i64, total: i64, bad: bool) -> Markup {
    let percent = if total > 0 {
        (done as f64 * 100.0 / total as f64).clamp(0.0, 100.0)
    } else {
        0.0
    };
    html! { div.bar { i class=@if bad { "bad" } style={ "width:" (format!("{percent:.0}")) "%" } {} } }
}

/// A stored error: its message and whole chain of causes.
pub fn error_chain(error: &Value) -> Markup {
    let text = |k: &str| {
        error
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let chain: Vec<String> = error
        .get("chain")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(|m| m.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    html! {
        div.error {
            p { (pill("error")) " " strong { (text("kind")) } " in " span.mono { (text("hook")) }
                @if let Some(n) = error.get("failures").and_then(Value::as_u64) { span.muted { " · failure " (n) } } }
            ul.chain {
                @if chain.is_empty() { li { (text("message")) } }
                @for cause in &chain { li { (cause) } }
            }
        }
    }
}

pub fn short(id: &uuid::Uuid) -> String {
    id.to_string().chars().take(8).collect()
}
