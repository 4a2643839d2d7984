//! The dashboard's pages: overview, integrations, an integration, runs, a run with live progress,
//! quotas, dead letters. Each reads through `tributary::admin`, like the API.

use maud::{Markup, html};
use tributary::admin::dead_letters::DeadLetterView;
use tributary::admin::quotas::QuotaView;
use tributary::admin::views::{IntegrationDetail, Overview, RunDetail};
use tributary::store::overview::{IntegrationSummary, RunProgress, RunSummary, StreamSummary};

use super::chart::activity_chart;
use super::layout::{bar, error_chain, pill, short, when};

pub fn overview(o: &Overview) -> Markup {
    let total: i64 = o.integrations.iter().map(|c| c.count).sum();
    let count = |status: &str| -> i64 {
        o.integrations
            .iter()
            .filter(|c| c.status == status)
            .map(|c| c.count)
            .sum()
    };
    let mut platforms: Vec<&str> = o.integrations.iter().map(|c| c.platform.as_str()).collect();
    platforms.dedup();
    html! {
        h1 { "Overview" }
        div.grid {
            div.card { div.label { "Integrations" } div.stat { (total) } }
            div.card { div.label { "In progress" } div.stat { (count("in-progress")) } }
            div.card { div.label { "In error" } div.stat style=@if count("error") > 0 { "color:var(--bad)" } { (count("error")) } }
            div.card { div.label { "Runs in flight" } div.stat #runs-in-flight { (o.runs_in_flight.len()) } }
            div.card { div.label { "Dead letters" } div.stat { a href="/dead-letters" { (o.dead_letters) } } }
        }
        div.card {
            h2 { "Activities written per minute, by platform" }
            (activity_chart(&o.activity_rates))
        }
        div.card {
            h2 { "Runs in flight" }
            (runs_table(&o.runs_in_flight, &o.progress))
        }
        div.card {
            h2 { "Integrations by platform and status" }
            @if platforms.is_empty() { p.empty { "No integration is connected yet." } }
            @else {
                table {
                    thead { tr { th { "platform" } @for s in ["pending", "in-progress", "done", "error", "disconnected"] { th { (s) } } } }
                    tbody {
                        @for p in &platforms {
                            tr {
                                td { a href={ "/integrations?platform=" (p) } { strong { (p) } } }
                                @for s in ["pending", "in-progress", "done", "error", "disconnected"] {
                                    @let n: i64 = o.integrations.iter().filter(|c| c.platform == *p && c.status == s).map(|c| c.count).sum();
                                    td { @if n > 0 { (pill(s)) " " (n) } @else { span.muted { "0" } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Runs; with live figures (`progress`) for runs in flight.
pub fn runs_table(runs: &[RunSummary], progress: &[RunProgress]) -> Markup {
    html! {
        @if runs.is_empty() { p.empty { "No run." } }
        @else {
            table.runs {
                thead { tr { th { "run" } th { "platform" } th { "kind" } th { "state" } th { "streams" } th { "activities" } th { "started" } th { "waiting" } } }
                tbody {
                    @for r in runs {
                        @let live = progress.iter().find(|p| p.run_id == r.id);
                        tr data-run=(r.id) {
                            td { a.mono href={ "/runs/" (r.id) } { (short(&r.id)) } }
                            td { a href={ "/integrations/" (r.integration_id) } { (r.platform) } }
                            td { @if r.onboarding { "onboarding" } @else { "check" } }
                            td { (pill(&r.state)) }
                            @match live {
                                Some(p) => {
                                    td.progress { span.done { (p.streams_done) " / " (p.streams_total) } (bar(p.streams_done, p.streams_total, false)) }
                                    td.activities { (p.activities_new) " new · " (p.activities_updated) " updated" }
                                }
                                None => {
                                    td { (r.streams_processed + r.streams_errored) }
                                    td.activities { (r.activities_created) " new · " (r.activities_updated) " updated" }
                                }
                            }
                            td { (when(r.started_at.or(Some(r.created_at)))) }
                            td { @if let Some(reason) = &r.delay_reason { (reason) " · " (when(r.delayed_until)) } @else { span.muted { "—" } } }
                        }
                    }
                }
            }
        }
    }
}

pub fn integrations(list: &[IntegrationSummary]) -> Markup {
    html! {
        h1 { "Integrations" }
        div.card {
            @if list.is_empty() { p.empty { "No integration." } }
            @else {
                table {
                    thead { tr { th { "integration" } th { "platform" } th { "status" } th { "activities" } th { "members" } th { "last processed" } th { "last error" } } }
                    tbody {
                        @for i in list {
                            tr {
                                td { a.mono href={ "/integrations/" (i.id) } { (short(&i.id)) } }
                                td { (i.platform) }
                                td { (pill(&i.status)) }
                                td { (i.activities) }
                                td { (i.members) }
                                td { (when(i.last_processed_at)) }
                                td { @if let Some(e) = &i.last_error { span.muted { (e.get("message").and_then(|m| m.as_str()).unwrap_or_default()) } } @else { span.muted { "—" } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn integration(d: &IntegrationDetail) -> Markup {
    let i = &d.integration;
    html! {
        h1 { (i.platform) " integration " span.mono.muted { (i.id) } }
        div.grid {
            div.card { div.label { "Status" } div.stat { (pill(&i.status)) } }
            div.card { div.label { "Activities" } div.stat { (i.activities) } }
            div.card { div.label { "Members" } div.stat { (i.members) } }
            div.card { div.label { "Last processed" } div.stat style="font-size:18px" { (when(i.last_processed_at)) } }
        }
        @if let (Some(e), Some(run)) = (&i.last_error, i.last_error_run_id) {
            div.card {
                h2 { "Last error · run " a.mono href={ "/runs/" (run) } { (short(&run)) } }
                (error_chain(e))
            }
        }
        div.card { h2 { "Quotas of " (i.platform) } (quotas_table(&d.quotas)) }
        div.card { h2 { "Runs" } (runs_table(&d.recent_runs, &[])) }
        div.card { h2 { "Settings" } pre.mono { (serde_json::to_string_pretty(&i.settings).unwrap_or_default()) } }
    }
}

pub fn run(
    d: &RunDetail,
    streams: &[StreamSummary],
    operator: bool,
    flash: Option<&str>,
) -> Markup {
    let r = &d.run;
    let p = &d.progress;
    let done = p.streams_processed + p.streams_errored;
    html! {
        @if let Some(message) = flash { div.flash { (message) } }
        h1 { @if r.onboarding { "Onboarding " } @else { "Check " } span.mono { (r.id) } }
        div.grid {
            div.card { div.label { "State" } div.stat #run-state { (pill(&r.state)) } }
            div.card {
                div.label { "Streams" }
                div.stat #streams-done { (done) " / " (p.streams_total) }
                (bar(done, p.streams_total, p.streams_errored > 0))
            }
            div.card { div.label { "Activities" } div.stat #activities { (p.activities_new) } div.muted { "new · " (p.activities_updated) " updated · " (p.members_new) " members" } }
            div.card { div.label { "Integration" } div.stat style="font-size:18px" { a href={ "/integrations/" (r.integration_id) } { (r.platform) } } }
        }
        div.card {
            p { "streams: " (p.streams_pending) " pending · " (p.streams_processing) " processing · " (p.streams_processed) " processed · " (p.streams_errored) " in error" }
            p { "created " (when(Some(r.created_at))) " · started " (when(r.started_at)) " · finished " (when(r.finished_at)) " · attempt " (r.attempt) }
            @if let Some(reason) = &r.delay_reason { p { strong { "Waiting: " } (reason) " until " (when(r.delayed_until)) } }
            @if !d.waiting_on.is_empty() { h2 { "Waiting on" } (quotas_table(&d.waiting_on)) }
            @if operator {
                form.inline method="post" action={ "/runs/" (r.id) "/continue" } { button type="submit" { "Continue run" } }
                " "
                @if matches!(r.state.as_str(), "pending" | "processing" | "delayed") {
                    form.inline method="post" action={ "/runs/" (r.id) "/cancel" } { button.danger type="submit" { "Cancel run" } }
                }
            }
        }
        @if let Some(e) = &r.error { div.card #run-error { h2 { "Error" } (error_chain(e)) } }
        div.card {
            h2 { "Streams" }
            @if streams.is_empty() { p.empty { "No stream yet." } }
            @else {
                table {
                    thead { tr { th { "stream" } th { "state" } th { "page" } th { "records" } th { "retries" } th { "error" } } }
                    tbody {
                        @for s in streams {
                            tr {
                                td.mono { (s.identifier) }
                                td { (pill(&s.state)) }
                                td { (s.page_number) }
                                td { (s.records) }
                                td { (s.retries) }
                                td { @if let Some(e) = &s.error { (error_chain(e)) } @else { span.muted { "—" } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn quotas_table(quotas: &[QuotaView]) -> Markup {
    html! {
        @if quotas.is_empty() { p.empty { "No rate-limit state reported yet." } }
        @else {
            table.quotas {
                thead { tr { th { "platform" } th { "credential" } th { "resource" } th { "remaining" } th { "resets" } th { "spend / min" } th { "runs out at" } th { "runs waiting" } } }
                tbody {
                    @for q in quotas {
                        tr {
                            td { (q.platform) }
                            td.mono { (q.credential) }
                            td { @if q.resource.is_empty() { span.muted { "—" } } @else { (q.resource) } }
                            td {
                                @match (q.remaining, q.limit) {
                                    (Some(rem), Some(limit)) => { (rem) " / " (limit) (bar(rem, limit, rem * 10 < limit)) }
                                    (Some(rem), None) => { (rem) }
                                    _ => { span.muted { "?" } }
                                }
                            }
                            td { (when(q.reset_at)) @if q.blocked_until.is_some() { br; span.muted { "blocked until " (when(q.blocked_until)) } } }
                            td { @if let Some(rate) = q.spend_per_min { (format!("{rate:.1}")) } @else { span.muted { "—" } } }
                            td.runs-out { @if q.runs_out_at.is_some() { (when(q.runs_out_at)) br; } span.muted { (q.outlook) } }
                            td.runs-waiting {
                                (q.runs_waiting)
                                @for id in &q.waiting_runs { br; a.mono href={ "/runs/" (id) } { (short(id)) } }
                                @if q.runs_waiting > q.waiting_runs.len() as i64 { br; span.muted { "…" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn quotas(quotas: &[QuotaView]) -> Markup {
    html! {
        h1 { "Quotas" }
        p.muted { "Every credential's rate-limit budget as its platform last reported it, shared by all workers. Credentials are shown by fingerprint, never the secret." }
        div.card { (quotas_table(quotas)) }
    }
}

pub fn dead_letters(list: &[DeadLetterView], operator: bool, flash: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = flash { div.flash #flash { (message) } }
        h1 { "Dead letters" }
        div.card {
            @if list.is_empty() { p.empty #no-dead-letters { "The dead-letter queue is empty." } }
            @else {
                table #dead-letters {
                    thead { tr { th { "message" } th { "reason" } th { "receives" } th { "dead since" } th { "body" } @if operator { th {} } } }
                    tbody {
                        @for d in list {
                            tr {
                                td.mono { (d.id.chars().take(8).collect::<String>()) }
                                td { (d.reason.as_deref().unwrap_or("moved by the queue's redrive policy")) }
                                td { (d.receive_count.map(|c| c.to_string()).unwrap_or_else(|| "?".into())) }
                                td { (when(d.dead_lettered_at)) }
                                td { pre.body.mono { (d.body) } }
                                @if operator {
                                    td {
                                        form.inline method="post" action={ "/dead-letters/" (d.id) "/redrive" } { button type="submit" { "Redrive" } }
                                        " "
                                        form.inline method="post" action={ "/dead-letters/" (d.id) "/discard" } { button.danger type="submit" { "Discard" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn login(error: Option<&str>) -> Markup {
    html! {
        div.card.login {
            h1 { "Sign in" }
            p.muted { "Paste an API token (create one with " span.mono { "tributary-server token create" } ")." }
            @if let Some(e) = error { div.flash style="background:#fdf3f3;border-color:#f1c4c2;color:#9b2b27" { (e) } }
            form method="post" action="/login" {
                input type="password" name="token" placeholder="trb_…" autofocus;
                button type="submit" { "Sign in" }
            }
        }
    }
}
