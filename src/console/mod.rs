//! The operator console under `/ui`: the truth about every agent, tool and number in a browser,
//! served by `run` on the same listener as `/v1`, rendered on the server.
//!
//! Why here and not a separate app: the console reads what the dashboard views and the
//! controller's tables say and acts through the very functions `/v1` calls
//! ([`crate::api::trigger`], [`crate::api::confirm_guard_block`],
//! [`crate::api::request_breaker_reset`], [`Controller::plan`](crate::controller::Controller::plan)
//! for the live diff), so it can never disagree with the API or grow logic of its own. No build
//! chain: pages are `maud` templates (escaped by default), the stylesheet and the one small
//! script are compiled into the binary, and every page reads without JavaScript.
//!
//! Security: sign-in takes the admin token (compared in constant time, as `/v1` does) and sets a
//! signed session cookie that does not contain it (`session`); every POST needs that session,
//! its CSRF token and a same-origin `Origin`; every answer carries a strict
//! Content-Security-Policy (no inline script or style, nothing from another origin, no framing).
//! Tenants' and Vapi's texts are only ever spliced in escaped.

mod pages;
mod queries;
mod session;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::Markup;
use uuid::Uuid;

use crate::api::{self, Api};
use crate::controller::PlanFilter;
use pages::{Frame, Live};
use queries::{AgentQuery, FleetCache, Sort};
use session::{Keys, Session};

/// Forms are small; anything larger is refused.
const BODY_LIMIT: usize = 16 * 1024;
/// How often a page's live region refreshes itself.
const REFRESH_MS: u32 = 2000;
/// What a page may load and where its forms may go: nothing but this origin's own files.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");

#[derive(Clone)]
struct Console {
    api: Api,
    /// Derived from the admin token; without one the console refuses every sign-in.
    keys: Option<Keys>,
    fleet: FleetCache,
}

/// The console's routes, for the HTTP server to merge beside `/v1`.
pub(crate) fn router(api: Api) -> Router {
    let console = Console {
        keys: api.token.as_ref().map(Keys::new),
        fleet: FleetCache::default(),
        api,
    };
    // The first fleet count starts with the server, so the first page after a restart does not
    // wait for a whole aggregate (bench: 242 ms at 100,000 agents) unless it comes at once.
    console.fleet.warm(console.api.store.pool());
    let signed_in_only = Router::new()
        .route("/ui", get(fleet))
        .route("/ui/agents", get(agents))
        .route("/ui/agents/{id}", get(agent))
        .route("/ui/tools", get(tools))
        .route("/ui/numbers", get(numbers))
        .route("/ui/guard/{id}", get(guard))
        .route("/ui/reconcile", post(reconcile))
        .route("/ui/guard/{id}/confirm", post(confirm))
        .route("/ui/breakers/{fingerprint}/reset", post(reset_breaker))
        .route("/ui/logout", post(logout))
        .layer(middleware::from_fn_with_state(console.clone(), signed_in));
    Router::new()
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/static/console.css", get(css))
        .route("/ui/static/console.js", get(js))
        .route("/ui/{*rest}", axum::routing::any(not_found))
        .merge(signed_in_only)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(security_headers))
        .with_state(console)
}

/// Every console answer: the CSP and its companions; pages are never cached.
async fn security_headers(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/ui/static/");
    let mut answer = next.run(request).await;
    let h = answer.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    answer
}

fn html(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn error_page(status: StatusCode, message: &str, back: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    html(status, pages::error(title, message, back))
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

/// A path on this console to return to: `/ui…` only, never another host (`//evil`, `/\evil`).
fn local_path(raw: Option<&str>) -> String {
    match raw {
        Some(p)
            if (p == "/ui" || p.starts_with("/ui/") || p.starts_with("/ui?"))
                && !p.contains("//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control)
                && p.len() <= 2048 =>
        {
            p.to_owned()
        }
        _ => "/ui".to_owned(),
    }
}

/// `path` with a notice code added to its query.
fn with_notice(path: &str, code: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}notice={code}")
}

/// Pages need a session; a GET without one goes to the sign-in form (and back after it), a POST
/// without one, or from another origin, is refused.
async fn signed_in(State(console): State<Console>, mut request: Request, next: Next) -> Response {
    let session = console
        .keys
        .as_ref()
        .zip(session::cookie(request.headers()))
        .and_then(|(keys, value)| keys.open(value));
    let is_post = request.method() == Method::POST;
    if is_post && !session::same_origin(request.headers()) {
        return error_page(
            StatusCode::FORBIDDEN,
            "This form was not sent from a page of this console (its Origin names another host).",
            "/ui",
        );
    }
    match session {
        Some(s) => {
            request.extensions_mut().insert(s);
            next.run(request).await
        }
        None if is_post => error_page(
            StatusCode::FORBIDDEN,
            "Your session has ended; sign in again.",
            "/ui/login",
        ),
        None => {
            let here = request
                .uri()
                .path_and_query()
                .map_or("/ui", |p| p.as_str())
                .to_owned();
            see_other(&format!(
                "/ui/login?next={}",
                pages::encode(&local_path(Some(&here)))
            ))
        }
    }
}

/// Every action form's CSRF field, checked against the session's token.
fn csrf_ok(session: &Session, presented: &str) -> Result<(), Box<Response>> {
    if session.csrf_matches(presented) {
        Ok(())
    } else {
        Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "This form's CSRF token is not this session's; reload the page and try again.",
            "/ui",
        )))
    }
}

fn frame(session: &Session, refresh: bool) -> Frame<'_> {
    Frame {
        csrf: &session.csrf,
        refresh_ms: if refresh { REFRESH_MS } else { 0 },
    }
}

fn store_failed(e: &crate::store::StoreError) -> Response {
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("The database did not answer: {e}"),
        "/ui",
    )
}

/// A `/ui` path no page answers: an HTML page pointing home, not the API's JSON 404 (the
/// path itself is not echoed: it is whatever a link or a hostile page made of it).
async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "No page lives at this address.",
        "/ui",
    )
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
        .into_response()
}

#[derive(Debug, Default, serde::Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_form(Query(q): Query<NextQuery>) -> Response {
    html(
        StatusCode::OK,
        pages::login(&local_path(q.next.as_deref()), None),
    )
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `Debug` must never show the token a form carried.
impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

async fn login(
    State(console): State<Console>,
    headers: HeaderMap,
    form: Form<LoginForm>,
) -> Response {
    let Form(form) = form;
    let next = local_path(form.next.as_deref());
    if !session::same_origin(&headers) {
        return error_page(
            StatusCode::FORBIDDEN,
            "This form was not sent from a page of this console (its Origin names another host).",
            "/ui/login",
        );
    }
    let (Some(token), Some(keys)) = (&console.api.token, &console.keys) else {
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(
                &next,
                Some(
                    "The console is disabled: no admin token is configured (ADMIN_TOKEN_FILE or ADMIN_TOKEN).",
                ),
            ),
        );
    };
    if !token.matches(form.token.trim()) {
        tracing::warn!("console sign-in refused: wrong admin token");
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(&next, Some("The admin token is wrong.")),
        );
    }
    tracing::info!("console sign-in");
    let mut answer = see_other(&next);
    if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(&keys.issue(), &headers)) {
        answer.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    answer
}

#[derive(Debug, serde::Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = csrf_ok(&session, &form.csrf) {
        return *refused;
    }
    let mut answer = see_other("/ui/login");
    if let Ok(cookie) = HeaderValue::from_str(&session::clear_cookie(&headers)) {
        answer.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    answer
}

#[derive(Debug, Default, serde::Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn fleet(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let pool = console.api.store.pool();
    let (counted, live) = tokio::join!(console.fleet.get(pool), queries::fleet_live(pool));
    let ((counted_at, counts), live) = match (counted, live) {
        (Ok(c), Ok(l)) => (c, l),
        (Err(e), _) | (_, Err(e)) => return store_failed(&e),
    };
    let status = console.api.controller.subscribe().borrow().clone();
    html(
        StatusCode::OK,
        pages::fleet(
            &frame(&session, true),
            &pages::FleetPage {
                counted_at,
                counts: &counts,
                live: &live,
                status: &status,
                notice: q.notice.as_deref(),
            },
        ),
    )
}

#[derive(Debug, Default, serde::Deserialize)]
struct AgentsParams {
    org: Option<String>,
    state: Option<String>,
    reason: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    page: Option<String>,
    notice: Option<String>,
}

/// The list's query from its parameters; an unusable one is refused, never guessed at.
fn agent_query(p: &AgentsParams) -> Result<AgentQuery, String> {
    fn given(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    let org = given(&p.org)
        .map(|o| {
            o.parse::<Uuid>()
                .map_err(|_| "org must be an organization id (a UUID)".to_owned())
        })
        .transpose()?;
    let state = given(&p.state).map(str::to_owned);
    if let Some(s) = &state {
        if ![
            "pending", "synced", "failed", "drifted", "paused", "deleted", "blocked",
        ]
        .contains(&s.as_str())
        {
            return Err("state must be one of pending, synced, failed, drifted, paused".to_owned());
        }
    }
    let reason = given(&p.reason).map(str::to_owned);
    if reason
        .as_deref()
        .is_some_and(|r| r.len() > 64 || !r.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(
            "reason must be a reason name (letters and digits, e.g. VapiRejected)".to_owned(),
        );
    }
    let sort = match given(&p.sort) {
        None => Sort::Name,
        Some(s) => *Sort::ALL
            .iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| "sort must be name, state, reason or attempted".to_owned())?,
    };
    let descending = match given(&p.dir) {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err("dir must be asc or desc".to_owned()),
    };
    let page = match given(&p.page) {
        None => 0,
        Some(n) => {
            n.parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| "page must be a page number from 1".to_owned())?
                - 1
        }
    };
    Ok(AgentQuery {
        org,
        state,
        reason,
        sort,
        descending,
        page: i64::from(page),
    })
}

async fn agents(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Query(p): Query<AgentsParams>,
) -> Response {
    let q = match agent_query(&p) {
        Ok(q) => q,
        Err(why) => return error_page(StatusCode::BAD_REQUEST, &why, "/ui/agents"),
    };
    match queries::agents(console.api.store.pool(), &q).await {
        Ok((rows, more)) => html(
            StatusCode::OK,
            pages::agents(&frame(&session, true), &q, &rows, more, p.notice.as_deref()),
        ),
        Err(e) => store_failed(&e),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct AgentParams {
    live: Option<String>,
    notice: Option<String>,
}

fn parse_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, Box<Response>> {
    raw.parse().map_err(|_| {
        Box::new(error_page(
            StatusCode::BAD_REQUEST,
            &format!("That is not {what}."),
            "/ui",
        ))
    })
}

async fn agent(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(p): Query<AgentParams>,
) -> Response {
    let id: Uuid = match parse_id(&id, "an agent id (a UUID)") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let pool = console.api.store.pool();
    let (detail, timeline) = tokio::join!(queries::agent(pool, id), queries::timeline(pool, id));
    let (detail, timeline) = match (detail, timeline) {
        (Ok(Some(d)), Ok(t)) => (d, t),
        (Ok(None), _) => {
            return error_page(
                StatusCode::NOT_FOUND,
                &format!("No agent has the id {id}."),
                "/ui/agents",
            );
        }
        (Err(e), _) | (_, Err(e)) => return store_failed(&e),
    };
    let wants_live = p.live.as_deref().is_some_and(|v| v == "1");
    let live = if wants_live {
        match console
            .api
            .controller
            .plan(&PlanFilter {
                org: None,
                agent: Some(id),
            })
            .await
        {
            Ok(view) => Live::Planned(Box::new(view)),
            Err(e) => Live::Failed(format!("The plan could not be made: {e}")),
        }
    } else {
        Live::NotAsked
    };
    html(
        StatusCode::OK,
        pages::agent(
            // A live comparison reads Vapi: it is not repeated by the refresh.
            &frame(&session, !wants_live),
            &pages::AgentPage {
                agent: &detail,
                timeline: &timeline,
                live,
                notice: p.notice.as_deref(),
            },
        ),
    )
}

#[derive(Debug, Default, serde::Deserialize)]
struct PageParams {
    page: Option<u32>,
}

fn page_of(p: &PageParams) -> i64 {
    i64::from(p.page.unwrap_or(1).max(1) - 1)
}

/// A list page from one page of rows, or the database's failure.
fn list_page<T>(
    rows: Result<(Vec<T>, bool), crate::store::StoreError>,
    render: impl FnOnce(&[T], bool) -> Markup,
) -> Response {
    match rows {
        Ok((rows, more)) => html(StatusCode::OK, render(&rows, more)),
        Err(e) => store_failed(&e),
    }
}

async fn tools(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Query(p): Query<PageParams>,
) -> Response {
    let page = page_of(&p);
    let rows = queries::tools(console.api.store.pool(), None, page).await;
    list_page(rows, |rows, more| {
        pages::tools(&frame(&session, true), rows, more, page)
    })
}

async fn numbers(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Query(p): Query<PageParams>,
) -> Response {
    let page = page_of(&p);
    let rows = queries::numbers(console.api.store.pool(), None, page).await;
    list_page(rows, |rows, more| {
        pages::numbers(&frame(&session, true), rows, more, page)
    })
}

async fn guard(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let id: i64 = match parse_id(&id, "a guard block id (a number)") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let pool = console.api.store.pool();
    let block = match queries::guard_block(pool, id).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            return error_page(
                StatusCode::NOT_FOUND,
                &format!("No guard block has the id {id}."),
                "/ui",
            );
        }
        Err(e) => return store_failed(&e),
    };
    let ids: Vec<Uuid> = block
        .sample
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["agentId"].as_str()?.parse().ok())
        .collect();
    let names = match queries::agent_names(pool, &ids).await {
        Ok(n) => n,
        Err(e) => return store_failed(&e),
    };
    html(
        StatusCode::OK,
        pages::guard(&frame(&session, true), &block, &names, q.notice.as_deref()),
    )
}

#[derive(Debug, serde::Deserialize)]
struct ReconcileForm {
    #[serde(default)]
    csrf: String,
    org_id: Option<String>,
    agent_id: Option<String>,
    back: Option<String>,
}

fn refused(r: &api::Refusal, back: &str) -> Response {
    error_page(r.status, &r.message, back)
}

async fn reconcile(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Form(form): Form<ReconcileForm>,
) -> Response {
    if let Err(r) = csrf_ok(&session, &form.csrf) {
        return *r;
    }
    let back = local_path(form.back.as_deref());
    let id = |v: &Option<String>| -> Result<Option<Uuid>, Box<Response>> {
        match v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => parse_id(v, "an id (a UUID)").map(Some),
        }
    };
    let (org, agent) = match (id(&form.org_id), id(&form.agent_id)) {
        (Ok(o), Ok(a)) => (o, a),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    match api::trigger(&console.api, org, agent, false).await {
        Ok(_) => see_other(&with_notice(&back, "reconcile")),
        Err(r) => refused(&r, &back),
    }
}

#[derive(Debug, serde::Deserialize)]
struct ConfirmForm {
    #[serde(default)]
    csrf: String,
    valid_for: Option<String>,
}

async fn confirm(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> Response {
    if let Err(r) = csrf_ok(&session, &form.csrf) {
        return *r;
    }
    let id: i64 = match parse_id(&id, "a guard block id (a number)") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    // The form offers these three; anything else is refused rather than parsed.
    let valid_for = match form.valid_for.as_deref().unwrap_or("1h") {
        "15m" => Duration::from_secs(15 * 60),
        "1h" => Duration::from_secs(3600),
        "4h" => Duration::from_secs(4 * 3600),
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "valid_for must be 15m, 1h or 4h.",
                &format!("/ui/guard/{id}"),
            );
        }
    };
    let back = format!("/ui/guard/{id}");
    match api::confirm_guard_block(&console.api, id, "console", valid_for).await {
        Ok(_) => see_other(&with_notice(&back, "confirmed")),
        Err(r) => refused(&r, &back),
    }
}

async fn reset_breaker(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(fingerprint): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = csrf_ok(&session, &form.csrf) {
        return *r;
    }
    match api::request_breaker_reset(&console.api, &fingerprint).await {
        Ok(()) => see_other(&with_notice("/ui", "reset")),
        Err(r) => refused(&r, "/ui"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_returned_to() {
        assert_eq!(
            local_path(Some("/ui/agents?state=failed")),
            "/ui/agents?state=failed"
        );
        assert_eq!(local_path(Some("/ui")), "/ui");
        for hostile in [
            "//evil.example",
            "/ui//evil",
            "https://evil.example/ui",
            "/\\evil",
            "/uix",
            "/v1/status",
        ] {
            assert_eq!(local_path(Some(hostile)), "/ui", "{hostile}");
        }
        assert_eq!(local_path(None), "/ui");
    }

    #[test]
    fn list_parameters_are_checked() {
        let p = |org: &str, state: &str, page: &str| AgentsParams {
            org: Some(org.to_owned()),
            state: Some(state.to_owned()),
            page: Some(page.to_owned()),
            ..AgentsParams::default()
        };
        assert!(agent_query(&p("", "failed", "2")).is_ok_and(|q| q.page == 1));
        assert!(agent_query(&p("nope", "", "")).is_err());
        assert!(agent_query(&p("", "'; drop table agents", "")).is_err());
        assert!(agent_query(&p("", "", "0")).is_err());
    }
}
