//! The API request pipeline, shared by every kind, and Vapi's error bodies.
//!
//! Design note: the order of the stages mirrors where each check lives in a NestJS/Express app, so
//! that combined failures resolve the way they would on the real service:
//!
//! 1. route match ([`super::kinds::match_route`]) — Express answers unknown routes (and unknown
//!    methods on known paths) with `404 Cannot METHOD /path` before any guard runs; such requests are
//!    counted apart, in `Counters::unknown_routes`;
//! 2. simulated latency (ours; it delays every answer of a simulated route, errors included);
//! 3. JSON body parsing — body-parser is middleware, so malformed JSON is a 400 even without a key
//!    (non-JSON content types leave the body as `{}`, as body-parser does);
//! 4. auth guard (401), then the rate limiter (429), then fault rules;
//! 5. the handler: `ParseUUIDPipe` on `{id}` (400), class validation (400, array), lookup (404),
//!    business rules (400, string) and references to other resources (404), then the write. Kinds
//!    with a discriminator (tools' `type`, phone numbers' `provider`) look the resource up before
//!    validating a PATCH, because the stored discriminator picks the update DTO.
//!
//! Dropping a connection is signalled by a [`DropConnection`] response extension that [`call`] turns
//! into a service error, on which hyper closes the socket without writing a response.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::Simulator;
use super::dto;
use super::faults::{FaultMode, take_fault};
use super::kinds::{self, ASSISTANT, KINDS, ListShape, Target, match_route};
use super::store::{DeleteOutcome, ListFilter, parse_ts};
use super::validate::{Op, Rejection, number_messages, validate_assistant};

/// Shared state of the router.
#[derive(Clone)]
pub(super) struct App {
    pub sim: Simulator,
    pub shutdown: CancellationToken,
}

/// Response extension asking the connection layer to close the socket without answering.
#[derive(Clone, Copy, Debug)]
struct DropConnection;

#[derive(Debug, thiserror::Error)]
#[error("connection dropped by simulator fault injection")]
pub(super) struct Dropped;

pub(super) fn router(sim: Simulator, shutdown: CancellationToken) -> Router {
    super::control::routes()
        .fallback(entry)
        .with_state(App { sim, shutdown })
}

/// The hyper service: run the router, and turn a drop marker into an error so hyper aborts the
/// connection instead of writing a response.
pub(super) async fn call(
    app: Router,
    req: Request<hyper::body::Incoming>,
) -> Result<Response, Dropped> {
    let resp = match app.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    if resp.extensions().get::<DropConnection>().is_some() {
        Err(Dropped)
    } else {
        Ok(resp)
    }
}

fn drop_connection() -> Response {
    let mut resp = Response::new(Body::empty());
    resp.extensions_mut().insert(DropConnection);
    resp
}

// ---------- Vapi error bodies (NestJS `HttpException` shape, key order as on the wire) ----------

#[derive(Serialize)]
struct ErrorBody<'a, M: Serialize> {
    message: M,
    error: &'a str,
    #[serde(rename = "statusCode")]
    status_code: u16,
}

pub(super) fn error_response<M: Serialize>(
    status: StatusCode,
    message: M,
    error: &str,
) -> Response {
    let body = ErrorBody {
        message,
        error,
        status_code: status.as_u16(),
    };
    (status, axum::Json(body)).into_response()
}

pub(super) fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "Not Found", "Not Found")
}

pub(super) fn bad_request<M: Serialize>(message: M) -> Response {
    error_response(StatusCode::BAD_REQUEST, message, "Bad Request")
}

fn unauthorized() -> Response {
    error_response(
        StatusCode::UNAUTHORIZED,
        "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa.",
        "Unauthorized",
    )
}

fn rate_limited(retry_after: Option<String>) -> Response {
    with_retry_after(
        error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit exceeded",
            "Too Many Requests",
        ),
        retry_after,
    )
}

fn with_retry_after(mut resp: Response, retry_after: Option<String>) -> Response {
    if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// A Vapi-looking error for an injected status: `{"message":"Bad Gateway","error":"Bad Gateway",...}`.
fn injected_status(status: u16, retry_after: Option<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let resp = match status {
        StatusCode::UNAUTHORIZED => unauthorized(),
        StatusCode::TOO_MANY_REQUESTS => rate_limited(None),
        _ => {
            let reason = status.canonical_reason().unwrap_or("Error");
            error_response(status, reason, reason)
        }
    };
    with_retry_after(resp, retry_after)
}

/// The 409 of a pinned resource's `DELETE` (`ToolPinnedConflictResponseDTO`'s shape).
fn conflict(error: &'static str, message: &'static str) -> Response {
    #[derive(Serialize)]
    struct Conflict {
        error: &'static str,
        message: &'static str,
    }
    (
        StatusCode::CONFLICT,
        axum::Json(Conflict { error, message }),
    )
        .into_response()
}

pub(super) fn cannot(method: &Method, path: &str) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!("Cannot {method} {path}"),
        "Not Found",
    )
}

fn json(status: StatusCode, value: Value) -> Response {
    (status, axum::Json(value)).into_response()
}

// ---------- routing ----------

pub(super) const ROUTE_COLLECTION: &str = "/assistant";
pub(super) const ROUTE_ITEM: &str = "/assistant/{id}";

/// `ParseUUIDPipe`: hyphenated 8-4-4-4-12 hex, any version, any case.
pub(super) fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

// ---------- the pipeline ----------

/// Counts a request as in flight until it is answered, dropped or abandoned by its client.
struct InFlight<'a>(&'a Simulator);

impl<'a> InFlight<'a> {
    fn enter(sim: &'a Simulator) -> Self {
        sim.lock().counters.enter();
        Self(sim)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().counters.leave();
    }
}

async fn entry(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let sim = &app.sim;
    let Some((route, id)) = match_route(&method, path) else {
        sim.lock()
            .counters
            .record_unknown(method.as_str(), kinds::unknown_template(path));
        return cannot(&method, path);
    };
    let _in_flight = InFlight::enter(sim);
    let record = |status: u16| sim.lock().counters.record(method.as_str(), route, status);

    // Simulated latency applies to every answer of a simulated route, errors included.
    let latency = sim.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let body = match parse_body(&headers, &body) {
        Ok(b) => b,
        Err(resp) => {
            record(resp.status().as_u16());
            return *resp;
        }
    };

    // Auth, rate limit and the fault decision happen under one lock so concurrent requests see a
    // consistent budget.
    let decision = {
        let mut st = sim.lock();
        let key = bearer(&headers);
        match key.and_then(|k| st.keys.get(k).cloned().map(|org| (k, org))) {
            None => Err(unauthorized()),
            Some((key, org)) => match st.limiter.check(key) {
                Err(secs) => {
                    let advertise = st.limiter.get().is_some_and(|l| l.retry_after);
                    Err(rate_limited(advertise.then(|| secs.to_string())))
                }
                Ok(()) => Ok((org, take_fault(&mut st.faults, method.as_str(), route))),
            },
        }
    };
    let (org, fault) = match decision {
        Ok(d) => d,
        Err(resp) => {
            record(resp.status().as_u16());
            return resp;
        }
    };

    let Some(fault) = fault else {
        let resp = handle(sim, &method, route, id, &org, &uri, body);
        record(resp.status().as_u16());
        return resp;
    };
    match fault.mode {
        FaultMode::Respond => {
            let resp = injected_status(fault.status.unwrap_or(500), fault.retry_after);
            record(resp.status().as_u16());
            resp
        }
        FaultMode::CommitThenFail => {
            let _ = handle(sim, &method, route, id, &org, &uri, body);
            let resp = injected_status(fault.status.unwrap_or(502), fault.retry_after);
            record(resp.status().as_u16());
            resp
        }
        FaultMode::CommitThenDrop => {
            let _ = handle(sim, &method, route, id, &org, &uri, body);
            record(0);
            drop_connection()
        }
        FaultMode::Drop => {
            record(0);
            drop_connection()
        }
        FaultMode::CommitThenHang => {
            let _ = handle(sim, &method, route, id, &org, &uri, body);
            record(0);
            app.shutdown.cancelled().await;
            drop_connection()
        }
        FaultMode::Hang => {
            // Counted now: the request may never finish.
            record(0);
            app.shutdown.cancelled().await;
            drop_connection()
        }
    }
}

/// The key of `Authorization: Bearer <key>`; the key is taken verbatim (stray whitespace is a real
/// cause of Vapi 401s).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(key)
        .filter(|k| !k.is_empty())
}

/// What body-parser + the ValidationPipe's first steps make of the body: `{}` when there is no JSON
/// body, a 400 for malformed JSON, a non-object top level, or an array.
fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, Box<Response>> {
    parse_body_inner(headers, body).map_err(Box::new)
}

#[allow(clippy::result_large_err)] // wrapped by `parse_body`, which boxes the error
fn parse_body_inner(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, Response> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json || body.is_empty() {
        return Ok(Map::new());
    }
    // body-parser's strict mode only accepts an object or array at the top level.
    if let Some((pos, &b)) = body
        .iter()
        .enumerate()
        .find(|(_, b)| !b.is_ascii_whitespace())
    {
        if b != b'{' && b != b'[' {
            let token = String::from_utf8_lossy(&body[pos..])
                .chars()
                .next()
                .unwrap_or('?');
            return Err(bad_request(format!(
                "Unexpected token {token} in JSON at position {pos}"
            )));
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        // class-validator with forbidUnknownValues refuses anything that is not a DTO instance.
        Ok(_) => Err(bad_request([
            "an unknown value was passed to the validate function",
        ])),
        Err(err) => Err(bad_request(json_error_message(body, &err))),
    }
}

/// Node's `JSON.parse` wording: `Unexpected token } in JSON at position 10` or `Unexpected end of JSON
/// input`.
fn json_error_message(body: &[u8], err: &serde_json::Error) -> String {
    if err.is_eof() {
        return "Unexpected end of JSON input".to_owned();
    }
    let offset: usize = body
        .split(|&b| b == b'\n')
        .take(err.line().saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum::<usize>()
        + err.column().saturating_sub(1);
    let offset = offset.min(body.len().saturating_sub(1));
    let token = String::from_utf8_lossy(&body[offset..])
        .chars()
        .next()
        .unwrap_or('?');
    format!("Unexpected token {token} in JSON at position {offset}")
}

fn rejection(r: Rejection) -> Response {
    match r {
        Rejection::Messages(m) => bad_request(m),
        Rejection::Message(m) => bad_request(m),
    }
}

/// The controller methods proper (synchronous; everything async happened before).
fn handle(
    sim: &Simulator,
    method: &Method,
    route: &str,
    id: Option<&str>,
    org: &str,
    uri: &Uri,
    body: Map<String, Value>,
) -> Response {
    let Some((kind, target)) = kinds::resolve(route) else {
        return cannot(method, uri.path());
    };
    match target {
        Target::PagedList => return list_kind(sim, kind, org, uri, ListShape::Paginated),
        Target::Collection if *method == Method::POST => {
            return if kind == ASSISTANT {
                create(sim, org, body)
            } else {
                create_kind(sim, kind, org, body)
            };
        }
        Target::Collection => return list_kind(sim, kind, org, uri, KINDS[kind].list),
        Target::Item => {}
    }
    let Some(id) = id.filter(|id| is_uuid(id)) else {
        return bad_request("Validation failed (uuid is expected)");
    };
    match *method {
        Method::GET => sim.lock().stores[kind]
            .get(Some(org), id)
            .map_or_else(not_found, |v| json(StatusCode::OK, v)),
        Method::PATCH if kind == ASSISTANT => update(sim, org, id, body),
        Method::PATCH => update_kind(sim, kind, org, id, body),
        _ => match sim.lock().stores[kind].delete(Some(org), id, true) {
            DeleteOutcome::Deleted(v) => json(StatusCode::OK, v),
            DeleteOutcome::Pinned => match KINDS[kind].pinned {
                Some((error, message)) => conflict(error, message),
                None => not_found(),
            },
            DeleteOutcome::Missing => not_found(),
        },
    }
}

fn create(sim: &Simulator, org: &str, body: Map<String, Value>) -> Response {
    let mut st = sim.lock();
    if let Err(r) = validate_assistant(
        &body,
        Op::Create,
        st.vapi_voices.as_deref(),
        &st.missing_azure_voices,
    ) {
        return rejection(r);
    }
    let mut body = body;
    let store = &mut st.stores[ASSISTANT];
    kinds::add_defaults(ASSISTANT, &mut body, store.next_seq());
    json(StatusCode::CREATED, store.insert(org, body, false))
}

fn update(sim: &Simulator, org: &str, id: &str, body: Map<String, Value>) -> Response {
    let mut st = sim.lock();
    // Class validation (the pipe) runs before the handler looks the assistant up; the business rules
    // live in the service, after the lookup.
    let voices = st.vapi_voices.clone();
    match validate_assistant(
        &body,
        Op::Update,
        voices.as_deref(),
        &st.missing_azure_voices,
    ) {
        Err(r @ Rejection::Messages(_)) => return rejection(r),
        Err(r @ Rejection::Message(_)) => {
            return if st.stores[ASSISTANT].get(Some(org), id).is_none() {
                not_found()
            } else {
                rejection(r)
            };
        }
        Ok(()) => {}
    }
    st.stores[ASSISTANT]
        .patch(Some(org), id, body, false)
        .map_or_else(not_found, |v| json(StatusCode::OK, v))
}

/// The page requested of a paginated list (`page`, `sortOrder`).
struct Page {
    page: usize,
    ascending: bool,
}

/// The list query, validated like Vapi's query DTO. Unknown parameters are ignored; `page` and
/// `sortOrder` only exist on the paginated routes.
fn parse_list_query(uri: &Uri, paginated: bool) -> Result<(ListFilter, Page), Box<Response>> {
    let params = match Query::<Vec<(String, String)>>::try_from_uri(uri) {
        Ok(Query(p)) => p,
        Err(err) => return Err(Box::new(bad_request(err.body_text()))),
    };
    let param = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut msgs = Vec::new();
    let mut filter = ListFilter {
        limit: 100,
        ..ListFilter::default()
    };
    let mut page = Page {
        page: 1,
        ascending: false,
    };
    if paginated {
        if let Some(raw) = param("page") {
            let n = js_number(raw);
            let before = msgs.len();
            number_messages("page", n, Some(1.0), None, &mut msgs);
            if msgs.len() == before {
                page.page = n.map_or(1, |n| n.floor() as usize);
            }
        }
        match param("sortOrder") {
            None | Some("DESC") => {}
            Some("ASC") => page.ascending = true,
            Some(_) => msgs.push("sortOrder must be one of the following values: ASC, DESC".into()),
        }
    }
    if let Some(raw) = param("limit") {
        let n = js_number(raw);
        let before = msgs.len();
        number_messages("limit", n, Some(0.0), Some(1000.0), &mut msgs);
        if msgs.len() == before {
            filter.limit = n.map_or(100, |n| n.floor() as usize);
        }
    }
    let dates = [
        ("createdAtGt", &mut filter.created_gt),
        ("createdAtLt", &mut filter.created_lt),
        ("createdAtGe", &mut filter.created_ge),
        ("createdAtLe", &mut filter.created_le),
        ("updatedAtGt", &mut filter.updated_gt),
        ("updatedAtLt", &mut filter.updated_lt),
        ("updatedAtGe", &mut filter.updated_ge),
        ("updatedAtLe", &mut filter.updated_le),
    ];
    for (name, slot) in dates {
        if let Some(raw) = param(name) {
            match parse_ts(raw) {
                Some(t) => *slot = Some(t),
                None => msgs.push(format!("{name} must be a valid ISO 8601 date string")),
            }
        }
    }
    if !msgs.is_empty() {
        return Err(Box::new(bad_request(msgs)));
    }
    Ok((filter, page))
}

// ---------- every other kind ----------

fn create_kind(sim: &Simulator, kind: usize, org: &str, mut body: Map<String, Value>) -> Response {
    if let Some(dtos) = dto::kind_dtos(KINDS[kind].name) {
        if let Err(msgs) = dtos.validate_create(&body) {
            return bad_request(msgs);
        }
    }
    let mut st = sim.lock();
    if let Err(resp) = check_references(&mut st.stores, kind, org, &body) {
        return *resp;
    }
    let store = &mut st.stores[kind];
    kinds::add_defaults(kind, &mut body, store.next_seq());
    json(StatusCode::CREATED, store.insert(org, body, false))
}

fn update_kind(
    sim: &Simulator,
    kind: usize,
    org: &str,
    id: &str,
    mut body: Map<String, Value>,
) -> Response {
    let mut st = sim.lock();
    if let Some(dtos) = dto::kind_dtos(KINDS[kind].name) {
        let stored = st.stores[kind].get(Some(org), id);
        let checked = match (&dtos.discriminator, &stored) {
            // The stored discriminator picks the DTO, so the lookup comes first.
            (Some(_), None) => return not_found(),
            (Some(d), Some(v)) => dtos.validate_update(v.get(d).and_then(Value::as_str), &body),
            (None, _) => dtos.validate_update(None, &body),
        };
        if let Err(msgs) = checked {
            return bad_request(msgs);
        }
        if stored.is_none() {
            return not_found();
        }
    }
    if let Err(resp) = check_references(&mut st.stores, kind, org, &body) {
        return *resp;
    }
    for key in KINDS[kind].write_only {
        body.remove(*key);
    }
    st.stores[kind]
        .patch(Some(org), id, body, false)
        .map_or_else(not_found, |v| json(StatusCode::OK, v))
}

/// Every id the body names in another kind must be a resource of that kind in the caller's org.
fn check_references(
    stores: &mut [super::store::Store],
    kind: usize,
    org: &str,
    body: &Map<String, Value>,
) -> Result<(), Box<Response>> {
    for reference in KINDS[kind].references {
        for id in kinds::referenced_ids(reference, body) {
            if stores[reference.kind].get(Some(org), id).is_none() {
                return Err(Box::new(error_response(
                    StatusCode::NOT_FOUND,
                    reference.missing,
                    "Not Found",
                )));
            }
        }
    }
    Ok(())
}

fn list_kind(sim: &Simulator, kind: usize, org: &str, uri: &Uri, shape: ListShape) -> Response {
    let paginated = shape == ListShape::Paginated;
    let (filter, page) = match parse_list_query(uri, paginated) {
        Ok(q) => q,
        Err(resp) => return *resp,
    };
    if !paginated {
        let items = sim.lock().stores[kind].list(Some(org), &filter);
        return json(StatusCode::OK, Value::Array(items));
    }
    let limit = filter.limit;
    let all = ListFilter {
        limit: usize::MAX,
        ..filter
    };
    let mut items = sim.lock().stores[kind].list(Some(org), &all);
    if page.ascending {
        items.reverse();
    }
    let total = items.len();
    let results: Vec<Value> = items
        .into_iter()
        .skip(page.page.saturating_sub(1).saturating_mul(limit))
        .take(limit)
        .collect();
    let total_pages = if limit == 0 { 0 } else { total.div_ceil(limit) };
    json(
        StatusCode::OK,
        serde_json::json!({
            "results": results,
            "metadata": {
                "itemsPerPage": limit,
                "totalItems": total,
                "currentPage": page.page,
                "totalPages": total_pages,
                "hasNextPage": page.page < total_pages,
                "sortOrder": if page.ascending { "ASC" } else { "DESC" },
            }
        }),
    )
}

/// JavaScript `Number(s)` for the forms a client would plausibly send; `None` is `NaN`.
fn js_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return Some(0.0);
    }
    match t {
        "Infinity" | "+Infinity" => return Some(f64::INFINITY),
        "-Infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    if !t
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    t.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            match_route(&Method::GET, "/assistant"),
            Some((ROUTE_COLLECTION, None))
        );
        assert_eq!(
            match_route(&Method::GET, "/assistant/"),
            Some((ROUTE_COLLECTION, None))
        );
        assert_eq!(match_route(&Method::PUT, "/assistant"), None);
        assert_eq!(
            match_route(&Method::DELETE, "/assistant/x"),
            Some((ROUTE_ITEM, Some("x")))
        );
        assert_eq!(match_route(&Method::GET, "/assistant/x/y"), None);
        assert_eq!(match_route(&Method::GET, "/assistants"), None);
    }

    #[test]
    fn uuids() {
        assert!(is_uuid("365e462b-9e38-4e63-bd39-58c12fb07136"));
        assert!(is_uuid("365E462B-9E38-4E63-BD39-58C12FB07136"));
        assert!(!is_uuid("365e462b9e384e63bd3958c12fb07136"));
        assert!(!is_uuid("nope"));
    }

    #[test]
    fn json_errors_read_like_node() {
        let body = br#"{"name":1,}"#;
        let err = serde_json::from_slice::<Value>(body).expect_err("malformed");
        assert_eq!(
            json_error_message(body, &err),
            "Unexpected token } in JSON at position 10"
        );
    }
}
