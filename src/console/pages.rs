//! The console's pages, rendered on the server with `maud`.
//!
//! Why maud: templates are Rust, checked at compile time, and every `(value)` spliced into a
//! page is HTML-escaped unless wrapped in `PreEscaped`, which this module never does with data.
//! Agent names, messages and Vapi's error texts are written by tenants and by Vapi, so that
//! default is the defence; the Content-Security-Policy (no inline script, no foreign origin) is
//! the second line. No page shows a key or the admin token: keys appear as their fingerprints,
//! as everywhere else in the controller.
//!
//! Every page reads without JavaScript. The one script (`console.js`) only refreshes the
//! `#live` region in place while the tab is visible.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;
use uuid::Uuid;

use super::queries::{
    AgentDetail, AgentQuery, AgentRow, FleetCounts, FleetLive, JournalRow, NumberRow, Sort, ToolRow,
};
use crate::controller::{LoopStatus, PlanView};
use crate::store::GuardBlock;

/// What every signed-in page needs: the CSRF token its forms carry.
pub(crate) struct Frame<'a> {
    pub(crate) csrf: &'a str,
    /// Refresh the `#live` region every this many milliseconds (0: never).
    pub(crate) refresh_ms: u32,
}

/// The states a dashboard shows, in the order the fleet page lists them.
const STATES: [&str; 7] = [
    "failed", "drifted", "pending", "blocked", "paused", "synced", "deleted",
];

fn state_class(state: &str) -> &'static str {
    match state {
        "synced" => "state state-synced",
        "failed" => "state state-failed",
        "drifted" => "state state-drifted",
        "pending" => "state state-pending",
        "paused" => "state state-paused",
        "deleted" => "state state-deleted",
        "blocked" => "state state-blocked",
        _ => "state",
    }
}

fn badge(state: &str) -> Markup {
    html! { span class=(state_class(state)) data-state=(state) { (state) } }
}

/// `2026-12-06 13:40:01 UTC (5 s ago)`.
fn when(t: Option<DateTime<Utc>>) -> Markup {
    match t {
        None => html! { span.muted { "never" } },
        Some(t) => html! {
            time datetime=(t.to_rfc3339()) title=(t.to_rfc3339()) {
                (t.format("%Y-%m-%d %H:%M:%S UTC")) " (" (ago(t)) ")"
            }
        },
    }
}

/// A coarse age: `42 s ago`, `3 min ago`, `5 h ago`, `2 d ago`.
pub(crate) fn ago(t: DateTime<Utc>) -> String {
    let secs = (Utc::now() - t).num_seconds();
    if secs < 0 {
        return "in the future".to_owned();
    }
    match secs {
        0..120 => format!("{secs} s ago"),
        120..7200 => format!("{} min ago", secs / 60),
        7200..172_800 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

fn layout(title: &str, frame: Option<&Frame<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — vapi-reconciler" }
                link rel="stylesheet" href="/ui/static/console.css";
                script src="/ui/static/console.js" defer {}
            }
            body {
                header {
                    nav {
                        a.brand href="/ui" { "vapi-reconciler" }
                        @if let Some(frame) = frame {
                            a href="/ui" { "Fleet" }
                            a href="/ui/agents" { "Agents" }
                            a href="/ui/tools" { "Tools" }
                            a href="/ui/numbers" { "Numbers" }
                            form.signout method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(frame.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                @let refresh = frame.map_or(0, |f| f.refresh_ms);
                main id="live" data-refresh=(refresh) {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A form that posts one action with the session's CSRF token.
fn action(
    frame: &Frame<'_>,
    path: &str,
    fields: &[(&str, String)],
    label: &str,
    class: &str,
) -> Markup {
    html! {
        form.action method="post" action=(path) {
            input type="hidden" name="csrf" value=(frame.csrf);
            @for (name, value) in fields {
                input type="hidden" name=(name) value=(value);
            }
            button type="submit" class=(class) { (label) }
        }
    }
}

/// The notices an action leaves after its redirect: fixed texts chosen by a code, so a link
/// cannot make the console say something of an attacker's choosing.
pub(crate) fn notice(code: &str) -> Option<&'static str> {
    match code {
        "reconcile" => Some("Reconcile requested: the next pass looks at it."),
        "confirmed" => Some(
            "Guard block confirmed: passes that delete and recreate at most its counts run now.",
        ),
        "reset" => Some("Breaker reset requested: the leader applies it after its current pass."),
        _ => None,
    }
}

fn notice_box(code: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = code.and_then(notice) {
            p.notice role="status" { (text) }
        }
    }
}

pub(crate) fn login(next: &str, error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
            form.login method="post" action="/ui/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Admin token" }
                input id="token" type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
            p.muted { "The token of ADMIN_TOKEN_FILE / ADMIN_TOKEN, the same one /v1 takes." }
        },
    )
}

pub(crate) fn error(title: &str, message: &str, back: &str) -> Markup {
    layout(
        title,
        None,
        html! {
            p.error role="alert" { (message) }
            p { a href=(back) { "Back" } }
        },
    )
}

pub(crate) struct FleetPage<'a> {
    pub(crate) counted_at: DateTime<Utc>,
    pub(crate) counts: &'a FleetCounts,
    pub(crate) live: &'a FleetLive,
    pub(crate) status: &'a LoopStatus,
    pub(crate) notice: Option<&'a str>,
}

fn counts_table(
    title: &str,
    counts: &std::collections::BTreeMap<String, i64>,
    link: bool,
) -> Markup {
    let known = STATES.iter().filter(|s| counts.contains_key(**s));
    let others = counts.keys().filter(|k| !STATES.contains(&k.as_str()));
    let total: i64 = counts.values().sum();
    html! {
        table.counts {
            caption { (title) " (" (total) ")" }
            @for state in known.map(|s| (*s).to_owned()).chain(others.cloned()) {
                tr {
                    td {
                        @if link {
                            a href=(format!("/ui/agents?state={state}")) { (badge(&state)) }
                        } @else {
                            (badge(&state))
                        }
                    }
                    td.num { (counts.get(&state).copied().unwrap_or(0)) }
                }
            }
            @if counts.is_empty() {
                tr { td colspan="2" { span.muted { "none" } } }
            }
        }
    }
}

pub(crate) fn fleet(frame: &Frame<'_>, page: &FleetPage<'_>) -> Markup {
    let status = page.status;
    let (role, proof_age) = status.role_now();
    let role = serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    layout(
        "Fleet",
        Some(frame),
        html! {
            (notice_box(page.notice))
            section.row {
                div.card {
                    (counts_table("Agents", &page.counts.agents, true))
                    p.muted { "Counted " (when(Some(page.counted_at))) "." }
                }
                div.card { (counts_table("Tools", &page.counts.tools, false)) p { a href="/ui/tools" { "All tools" } } }
                div.card { (counts_table("Numbers", &page.counts.numbers, false)) p { a href="/ui/numbers" { "All numbers" } } }
                div.card {
                    h2 { "Oldest unresolved" }
                    @match &page.counts.oldest {
                        Some(o) => {
                            p { a href=(format!("/ui/agents/{}", o.agent_id)) { (o.name) } " " (badge(&o.state)) " " code { (o.reason) } }
                            p #oldest-age { "Not in sync since " (when(Some(o.since))) }
                        }
                        None => { p { "Every agent is synced or left alone on purpose." } }
                    }
                    (action(frame, "/ui/reconcile", &[("back", "/ui".to_owned())], "Reconcile everything", "primary"))
                }
            }
            section {
                h2 { "Failing organizations" }
                @if page.counts.failing_orgs.is_empty() {
                    p.muted { "No organization has a failed agent." }
                } @else {
                    table {
                        thead { tr { th { "Organization" } th.num { "Failed agents" } th {} } }
                        tbody {
                            @for o in &page.counts.failing_orgs {
                                tr {
                                    td { a href=(format!("/ui/agents?org={}&state=failed", o.org_id)) { (o.name) } }
                                    td.num { (o.failed) }
                                    td { (action(frame, "/ui/reconcile", &[("org_id", o.org_id.to_string()), ("back", "/ui".to_owned())], "Reconcile organization", "")) }
                                }
                            }
                        }
                    }
                }
            }
            section {
                h2 { "Keys" }
                @if page.live.keys.is_empty() {
                    p.muted { "No key has been used yet." }
                } @else {
                    table {
                        thead { tr { th { "Fingerprint" } th { "Used for" } th { "Breaker" } th.num { "Failures in a row" } th { "Open until" } th { "Quarantine" } th {} } }
                        tbody {
                            @for k in &page.live.keys {
                                tr {
                                    td { code { (k.fingerprint) } }
                                    td { (k.scope) }
                                    td { span class=(if k.breaker_state == "closed" { "state state-synced" } else { "state state-failed" }) { (k.breaker_state) } }
                                    td.num { (k.consecutive_failures) }
                                    td { @if k.open_until.is_some() { (when(k.open_until)) } }
                                    td {
                                        @if let Some(at) = k.rejected_at {
                                            span.state.state-failed { "rejected" }
                                            " " (k.rejected_status.map(|s| s.to_string()).unwrap_or_default()) " " (when(Some(at)))
                                            @if let Some(m) = &k.rejected_message { div.message { (m) } }
                                        } @else { span.muted { "no" } }
                                    }
                                    td {
                                        (action(frame, &format!("/ui/breakers/{}/reset", k.fingerprint), &[], "Reset breaker", ""))
                                        @if let Some(at) = k.reset_requested_at { div.muted { "reset asked " (ago(at)) } }
                                    }
                                }
                            }
                        }
                    }
                    p.muted { "As the leader last wrote them (" (when(page.live.keys.iter().map(|k| k.updated_at).max())) ")." }
                }
            }
            section {
                h2 { "Open guard blocks" }
                @if page.live.blocks.is_empty() {
                    p.muted { "No pass is blocked." }
                } @else {
                    (blocks_table(frame, &page.live.blocks))
                }
            }
            section.row {
                div.card {
                    h2 { "This replica" }
                    dl {
                        dt { "Role" } dd #role { (role) @if let Some(a) = proof_age { " (last proof " (format!("{a:.1}")) " s ago)" } }
                        dt { "Epoch" } dd { (status.epoch.map(|e| e.to_string()).unwrap_or_else(|| "—".to_owned())) }
                        dt { "Shards" } dd {
                            (status.shard_count.max(1)) " in all; holds "
                            @if status.shards.is_empty() { "none" }
                            @for s in &status.shards { code { (s.shard) } @if !s.writing { " (waiting)" } " " }
                        }
                        @if let Some(note) = &status.shard_note { dt { "Note" } dd { (note) } }
                        dt { "Full passes" } dd { (status.passes) }
                        dt { "Focused passes" } dd { (status.focused_passes) }
                        dt { "Last full pass" } dd #last-full { (when(status.last_pass_finished_at)) }
                        dt { "Last focused pass" } dd #last-focused { (when(status.last_focused_pass_finished_at)) }
                        @if let Some(e) = &status.last_error { dt { "Last error" } dd.message { (e) } }
                    }
                    @if let Some(p) = &status.last_pass {
                        p.muted {
                            (p.agents) " agents: " (p.in_sync) " in sync, " (p.created) " created, "
                            (p.patched) " patched, " (p.recreated) " recreated, " (p.deleted) " deleted, "
                            (p.failed) " failed, " (p.deferred) " deferred."
                        }
                    }
                }
                div.card {
                    h2 { "Leases" }
                    table {
                        thead { tr { th { "Lease" } th { "Holder" } th.num { "Epoch" } th { "Since" } } }
                        tbody {
                            @for l in &page.live.leases {
                                tr {
                                    td { code { (l.name) } }
                                    td { (l.holder) @if l.released_at.is_some() { " " span.muted { "(released)" } } }
                                    td.num { (l.epoch) }
                                    td { (when(l.acquired_at)) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn blocks_table(frame: &Frame<'_>, blocks: &[GuardBlock]) -> Markup {
    html! {
        table {
            thead { tr { th { "Block" } th { "Since" } th.num { "Deletes" } th.num { "Recreates" } th.num { "Fleet" } th.num { "Limit" } th {} } }
            tbody {
                @for b in blocks {
                    tr {
                        td { a href=(format!("/ui/guard/{}", b.id)) { "#" (b.id) } }
                        td { (when(Some(b.created_at))) }
                        td.num { (b.deletes) }
                        td.num { (b.recreates) }
                        td.num { (b.fleet) }
                        td.num { (b.limit) }
                        td { (action(frame, &format!("/ui/guard/{}/confirm", b.id), &[], "Confirm", "danger")) }
                    }
                }
            }
        }
    }
}

fn sort_link(q: &AgentQuery, sort: Sort) -> Markup {
    let descending = q.sort == sort && !q.descending;
    let mut link = AgentQuery {
        sort,
        descending,
        page: 0,
        ..q.clone()
    };
    link.page = 0;
    let arrow = match (q.sort == sort, q.descending) {
        (true, false) => " ▲",
        (true, true) => " ▼",
        _ => "",
    };
    html! { a href=(agents_url(&link)) { (sort.as_str()) (arrow) } }
}

/// The list's URL for a query: only known values, each URL-encoded.
pub(crate) fn agents_url(q: &AgentQuery) -> String {
    let mut parts = Vec::new();
    if let Some(org) = q.org {
        parts.push(format!("org={org}"));
    }
    if let Some(s) = &q.state {
        parts.push(format!("state={}", encode(s)));
    }
    if let Some(r) = &q.reason {
        parts.push(format!("reason={}", encode(r)));
    }
    if q.sort != Sort::Name {
        parts.push(format!("sort={}", q.sort.as_str()));
    }
    if q.descending {
        parts.push("dir=desc".to_owned());
    }
    if q.page > 0 {
        parts.push(format!("page={}", q.page + 1));
    }
    if parts.is_empty() {
        "/ui/agents".to_owned()
    } else {
        format!("/ui/agents?{}", parts.join("&"))
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986 §2.3).
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn pager(prev: Option<String>, next: Option<String>, page: i64) -> Markup {
    html! {
        nav.pager {
            @if let Some(p) = prev { a rel="prev" href=(p) { "← Previous" } }
            span { "Page " (page + 1) }
            @if let Some(n) = next { a rel="next" href=(n) { "Next →" } }
        }
    }
}

pub(crate) fn agents(
    frame: &Frame<'_>,
    q: &AgentQuery,
    rows: &[AgentRow],
    more: bool,
    notice: Option<&str>,
) -> Markup {
    let prev = (q.page > 0).then(|| {
        agents_url(&AgentQuery {
            page: q.page - 1,
            ..q.clone()
        })
    });
    let next = more.then(|| {
        agents_url(&AgentQuery {
            page: q.page + 1,
            ..q.clone()
        })
    });
    layout(
        "Agents",
        Some(frame),
        html! {
            (notice_box(notice))
            form.filters method="get" action="/ui/agents" {
                label { "Organization " input type="text" name="org" size="36" placeholder="organization id" value=(q.org.map(|o| o.to_string()).unwrap_or_default()); }
                label { "State "
                    select name="state" {
                        option value="" { "any" }
                        @for s in STATES {
                            option value=(s) selected[q.state.as_deref() == Some(s)] { (s) }
                        }
                    }
                }
                label { "Reason " input type="text" name="reason" placeholder="e.g. VapiRejected" value=(q.reason.clone().unwrap_or_default()); }
                input type="hidden" name="sort" value=(q.sort.as_str());
                @if q.descending { input type="hidden" name="dir" value="desc"; }
                button type="submit" { "Filter" }
                a href="/ui/agents" { "Clear" }
            }
            @if let Some(org) = q.org {
                (action(frame, "/ui/reconcile", &[("org_id", org.to_string()), ("back", agents_url(q))], "Reconcile this organization", ""))
            }
            table.agents {
                thead {
                    tr {
                        th { (sort_link(q, Sort::Name)) }
                        th { "Organization" }
                        th { (sort_link(q, Sort::State)) }
                        th { (sort_link(q, Sort::Reason)) }
                        th { "Message" }
                        th { (sort_link(q, Sort::Attempted)) }
                    }
                }
                tbody {
                    @for r in rows {
                        tr {
                            td { a href=(format!("/ui/agents/{}", r.agent_id)) { (r.name) } }
                            td { a href=(agents_url(&AgentQuery { org: Some(r.org_id), ..AgentQuery::default() })) { (r.org_name.clone().unwrap_or_else(|| r.org_id.to_string())) } }
                            td { (badge(r.state.as_deref().unwrap_or("pending"))) }
                            td { code { (r.reason.clone().unwrap_or_default()) } }
                            td.message { (shorten(r.message.as_deref().unwrap_or(""), 240)) }
                            td { (when(r.last_attempt_at)) }
                        }
                    }
                    @if rows.is_empty() { tr { td colspan="6" { span.muted { "No agent matches." } } } }
                }
            }
            (pager(prev, next, q.page))
        },
    )
}

/// At most `max` characters, with an ellipsis when cut.
fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// The value at a drift path (`model.messages[0].content`) in a JSON body.
pub(crate) fn at_path<'a>(body: &'a Value, path: &str) -> Option<&'a Value> {
    let mut here = body;
    for segment in path.split('.') {
        let (key, mut rest) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !key.is_empty() {
            here = here.get(key)?;
        }
        while let Some(tail) = rest.strip_prefix('[') {
            let close = tail.find(']')?;
            let index: usize = tail[..close].parse().ok()?;
            here = here.get(index)?;
            rest = &tail[close + 1..];
        }
    }
    Some(here)
}

fn json_cell(v: Option<&Value>) -> Markup {
    match v {
        None | Some(Value::Null) => html! { td.absent { "(absent)" } },
        Some(v) => {
            let text = serde_json::to_string_pretty(v).unwrap_or_default();
            html! { td { pre { (text) } } }
        }
    }
}

fn drift_kind(kind: &str) -> &'static str {
    match kind {
        "desired" => "spec changed",
        "actual" => "changed in Vapi",
        _ => "differs",
    }
}

/// What the live comparison found for this agent.
pub(crate) enum Live {
    NotAsked,
    Failed(String),
    Planned(Box<PlanView>),
}

pub(crate) struct AgentPage<'a> {
    pub(crate) agent: &'a AgentDetail,
    pub(crate) timeline: &'a [JournalRow],
    pub(crate) live: Live,
    pub(crate) notice: Option<&'a str>,
}

pub(crate) fn agent(frame: &Frame<'_>, page: &AgentPage<'_>) -> Markup {
    let a = page.agent;
    let me = format!("/ui/agents/{}", a.agent_id);
    let drift: Vec<(String, String)> = a
        .drift_detail
        .as_ref()
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|d| {
                    (
                        d["path"].as_str().unwrap_or_default().to_owned(),
                        d["kind"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    layout(
        &a.name,
        Some(frame),
        html! {
            (notice_box(page.notice))
            section.status {
                p { (badge(&a.state)) " " code #reason { (a.reason) } }
                div.message #message { (a.message) }
            }
            section.row {
                div.card {
                    dl {
                        dt { "Agent" } dd { code { (a.agent_id) } }
                        dt { "Organization" } dd { a href=(agents_url(&AgentQuery { org: Some(a.org_id), ..AgentQuery::default() })) { (a.org_name.clone().unwrap_or_else(|| a.org_id.to_string())) } }
                        dt { "Generation" } dd { (a.generation) " (observed " (a.observed_generation.map(|g| g.to_string()).unwrap_or_else(|| "none".to_owned())) ")" }
                        dt { "Assistant" } dd { code { (a.assistant_id.clone().unwrap_or_else(|| "none".to_owned())) } }
                        dt { "Mode" } dd { (a.management_mode) }
                        dt { "Tools" } dd { @if a.tool_names.is_empty() { span.muted { "none" } } @for t in &a.tool_names { code { (t) } " " } }
                        dt { "Key" } dd { code { (a.key_fingerprint.clone().unwrap_or_else(|| "—".to_owned())) } }
                        dt { "Saved" } dd { (when(Some(a.saved_at))) }
                        dt { "Last attempt" } dd { (when(a.last_attempt_at)) }
                        dt { "Last success" } dd { (when(a.last_success_at)) }
                        @if let Some(d) = a.deleted_at { dt { "Deleted" } dd { (when(Some(d))) } }
                    }
                }
                div.card {
                    h2 { "Actions" }
                    (action(frame, "/ui/reconcile", &[("agent_id", a.agent_id.to_string()), ("back", me.clone())], "Reconcile this agent", "primary"))
                    (action(frame, "/ui/reconcile", &[("org_id", a.org_id.to_string()), ("back", me.clone())], "Reconcile its organization", ""))
                    p { a #compare href=(format!("{me}?live=1")) { "Compare with Vapi now" } }
                    p.muted { "Runs the plan (as GET /v1/plan does) for this agent: reads Vapi, writes nothing." }
                }
            }
            section #drift {
                h2 { "Drift at the last pass" }
                @if drift.is_empty() {
                    p.muted { "No field differed at the last pass." }
                } @else {
                    table.diff {
                        thead { tr { th { "Field" } th { "Why" } th { "Desired (spec)" } th { "Last applied by the controller" } } }
                        tbody {
                            @for (path, kind) in &drift {
                                tr {
                                    td { code { (path) } }
                                    td { (drift_kind(kind)) }
                                    (json_cell(at_path(&a.spec, path)))
                                    (json_cell(a.applied.as_ref().and_then(|b| at_path(b, path))))
                                }
                            }
                        }
                    }
                    p.muted { "A field changed in Vapi differs from what was applied; the live comparison shows Vapi's value." }
                }
            }
            (live_section(a, &page.live))
            section {
                h2 { "Voice normalizations" }
                @match a.normalizations.as_deref() {
                    Some(list) if !list.is_empty() => { ul { @for n in list { li { code { (n) } } } } }
                    _ => { p.muted { "None." } }
                }
            }
            section {
                h2 { "Vapi writes" }
                @if page.timeline.is_empty() {
                    p.muted { "The journal has no write for this agent." }
                } @else {
                    table.timeline {
                        thead { tr { th { "Started" } th { "Kind" } th { "Action" } th { "Outcome" } th.num { "Gen." } th { "Vapi id" } th { "Why" } th { "By" } } }
                        tbody {
                            @for j in page.timeline {
                                tr {
                                    td { (when(Some(j.started_at))) @if j.finished_at.is_none() { div.muted { "not finished" } } }
                                    td { (j.kind) }
                                    td { (j.action) }
                                    td { span class=(match j.outcome.as_str() { "ok" => "state state-synced", "pending" | "unknown" => "state state-pending", _ => "state state-failed" }) { (j.outcome) } }
                                    td.num { (j.generation.map(|g| g.to_string()).unwrap_or_default()) }
                                    td { code { (j.vapi_id.clone().unwrap_or_default()) } }
                                    td.message { (j.why) }
                                    td.muted { (j.holder) " @" (j.epoch) " #" (j.id) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn live_section(a: &AgentDetail, live: &Live) -> Markup {
    html! {
        @match live {
            Live::NotAsked => {}
            Live::Failed(why) => {
                section #live-diff { h2 { "Compared with Vapi now" } p.error { (why) } }
            }
            Live::Planned(view) => {
                section #live-diff {
                    h2 { "Compared with Vapi now" }
                    @let change = view.changes.iter().find(|c| c.agent_id == a.agent_id);
                    @let blocked = view.blocked_agents.iter().chain(&view.waiting_agents).find(|b| b.agent_id == a.agent_id);
                    @if let Some(b) = blocked {
                        p { "Nothing can be sent: " code { (b.reason) } }
                        div.message { (b.message) }
                    } @else if let Some(c) = change {
                        p { "The next pass would " strong #live-action { (c.action) } @if let Some(id) = &c.assistant_id { " assistant " code { (id) } } "." }
                        @if !c.voice.is_empty() { p { "Voice rewrites: " @for v in &c.voice { code { (v) } " " } } }
                        @if c.fields.is_empty() {
                            @if let Some(desired) = &c.desired {
                                table.diff { thead { tr { th { "Desired body" } th { "In Vapi" } } } tbody { tr { (json_cell(Some(desired))) td.absent { "(no assistant)" } } } }
                            }
                        } @else {
                            table.diff {
                                thead { tr { th { "Field" } th { "Why" } th { "Desired" } th { "In Vapi now" } } }
                                tbody {
                                    @for f in &c.fields {
                                        @let kind = serde_json::to_value(f.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
                                        tr {
                                            td { code { (f.path) } }
                                            td { (drift_kind(&kind)) }
                                            (json_cell(c.desired.as_ref().and_then(|b| at_path(b, &f.path))))
                                            (json_cell(c.actual.as_ref().and_then(|b| at_path(b, &f.path))))
                                        }
                                    }
                                }
                            }
                        }
                    } @else if view.not_enforced.contains(&a.agent_id) {
                        p { "It differs, and is left alone on purpose (" (a.management_mode) ")." }
                    } @else {
                        p #live-in-sync { "In sync with Vapi: nothing would be sent." }
                    }
                }
            }
        }
    }
}

pub(crate) fn guard(
    frame: &Frame<'_>,
    block: &GuardBlock,
    names: &std::collections::HashMap<Uuid, String>,
    notice: Option<&str>,
) -> Markup {
    let sample = block.sample.as_array().cloned().unwrap_or_default();
    layout(
        &format!("Guard block #{}", block.id),
        Some(frame),
        html! {
            (notice_box(notice))
            p {
                "A pass would have deleted " strong #deletes { (block.deletes) } " and recreated "
                strong #recreates { (block.recreates) } " assistants of a fleet of " (block.fleet)
                "; the limit is " (block.limit) ". It stopped before its first write."
            }
            dl {
                dt { "Blocked" } dd { (when(Some(block.created_at))) }
                dt { "Last seen" } dd { (when(Some(block.last_seen_at))) }
                dt { "Epoch" } dd { (block.epoch) }
                dt { "Confirmed" } dd #confirmed {
                    @match (block.confirmed_at, &block.confirmed_by) {
                        (Some(at), by) => { (when(Some(at))) " by " (by.clone().unwrap_or_default()) ", valid until " (when(block.expires_at)) }
                        _ => { "no" }
                    }
                }
            }
            @if block.confirmed_at.is_none() {
                form.action method="post" action=(format!("/ui/guard/{}/confirm", block.id)) {
                    input type="hidden" name="csrf" value=(frame.csrf);
                    label { "Valid for "
                        select name="valid_for" {
                            option value="1h" selected { "1 hour" }
                            option value="15m" { "15 minutes" }
                            option value="4h" { "4 hours" }
                        }
                    }
                    button.danger type="submit" { "Confirm: let passes this destructive run" }
                }
            }
            h2 { "Sample of what would go" }
            table {
                thead { tr { th { "Action" } th { "Agent" } th { "Assistants" } } }
                tbody {
                    @for s in &sample {
                        @let agent = s["agentId"].as_str().and_then(|a| a.parse::<Uuid>().ok());
                        tr {
                            td { code { (s["action"].as_str().unwrap_or_default()) } }
                            td {
                                @match agent {
                                    Some(id) => { a href=(format!("/ui/agents/{id}")) { (names.get(&id).cloned().unwrap_or_else(|| id.to_string())) } }
                                    None => { span.muted { "—" } }
                                }
                            }
                            td {
                                @for key in ["assistantIds", "assistantId", "missingAssistantId"] {
                                    @match &s[key] {
                                        Value::String(id) => { code { (id) } " " }
                                        Value::Array(ids) => { @for id in ids { code { (id.as_str().unwrap_or_default()) } " " } }
                                        _ => {}
                                    }
                                }
                            }
                        }
                    }
                    @if sample.is_empty() { tr { td colspan="3" { span.muted { "No sample was recorded." } } } }
                }
            }
        },
    )
}

pub(crate) fn tools(frame: &Frame<'_>, rows: &[ToolRow], more: bool, page: i64) -> Markup {
    let url = |p: i64| format!("/ui/tools?page={}", p + 1);
    layout(
        "Tools",
        Some(frame),
        html! {
            table {
                thead { tr { th { "Tool" } th { "Organization" } th { "State" } th { "Reason" } th { "Message" } th { "Vapi id" } th { "Key" } } }
                tbody {
                    @for t in rows {
                        tr {
                            td { (t.name) div.muted { code { (t.tool_id) } } }
                            td { (t.org_name.clone().unwrap_or_default()) }
                            td { (badge(t.state.as_deref().unwrap_or("pending"))) }
                            td { code { (t.reason.clone().unwrap_or_default()) } }
                            td.message { (shorten(t.message.as_deref().unwrap_or(""), 240)) }
                            td { code { (t.vapi_tool_id.clone().unwrap_or_default()) } }
                            td { code { (t.key_fingerprint.clone().unwrap_or_default()) } }
                        }
                    }
                    @if rows.is_empty() { tr { td colspan="7" { span.muted { "No tools." } } } }
                }
            }
            (pager((page > 0).then(|| url(page - 1)), more.then(|| url(page + 1)), page))
        },
    )
}

pub(crate) fn numbers(frame: &Frame<'_>, rows: &[NumberRow], more: bool, page: i64) -> Markup {
    let url = |p: i64| format!("/ui/numbers?page={}", p + 1);
    layout(
        "Numbers",
        Some(frame),
        html! {
            table {
                thead { tr { th { "Number" } th { "Organization" } th { "Rings" } th { "State" } th { "Reason" } th { "Message" } th { "Assistant" } } }
                tbody {
                    @for n in rows {
                        tr {
                            td { (n.number.clone().or_else(|| n.vapi_phone_number_id.clone()).unwrap_or_default()) div.muted { code { (n.phone_number_id) } } }
                            td { (n.org_name.clone().unwrap_or_default()) }
                            td {
                                @match n.agent_id {
                                    Some(id) => { a href=(format!("/ui/agents/{id}")) { (n.agent_name.clone().unwrap_or_else(|| id.to_string())) } }
                                    None => { span.muted { "nobody" } }
                                }
                            }
                            td { (badge(n.state.as_deref().unwrap_or("pending"))) }
                            td { code { (n.reason.clone().unwrap_or_default()) } }
                            td.message { (shorten(n.message.as_deref().unwrap_or(""), 240)) }
                            td { code { (n.assistant_id.clone().unwrap_or_default()) } }
                        }
                    }
                    @if rows.is_empty() { tr { td colspan="7" { span.muted { "No numbers." } } } }
                }
            }
            (pager((page > 0).then(|| url(page - 1)), more.then(|| url(page + 1)), page))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_reach_nested_values() {
        let body = json!({"model": {"messages": [{"content": "A"}], "temperature": 0.5}});
        assert_eq!(
            at_path(&body, "model.messages[0].content"),
            Some(&json!("A"))
        );
        assert_eq!(at_path(&body, "model.temperature"), Some(&json!(0.5)));
        assert_eq!(at_path(&body, "model.messages[3]"), None);
        assert_eq!(at_path(&body, "voice"), None);
    }

    #[test]
    fn hostile_text_is_escaped() {
        let page = error(
            "<script>alert(1)</script>",
            "\"><img src=x onerror=alert(1)>",
            "/ui",
        )
        .into_string();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
    }

    #[test]
    fn list_urls_encode_their_values() {
        let q = AgentQuery {
            reason: Some("a&b=<c>".to_owned()),
            page: 2,
            ..AgentQuery::default()
        };
        assert_eq!(agents_url(&q), "/ui/agents?reason=a%26b%3D%3Cc%3E&page=3");
    }
}
