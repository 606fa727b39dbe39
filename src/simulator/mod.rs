//! An in-process simulator of Vapi's REST API (assistants, tools, phone numbers, squads, credentials,
//! structured outputs, evals and eval simulations), with fault injection.
//!
//! Design note: the controller's tests are only as true as this server, so it speaks Vapi's wire format
//! as Vapi documents and answers it (bodies, status codes, class-validator messages, ordering, timestamps)
//! and adds a separate, unauthenticated control surface under `/_sim` (see `docs/simulator.md`).
//!
//! Layout:
//! - `mod.rs`: the public handle ([`Simulator`]), its in-process control methods, and the accept loop.
//!   We run our own hyper accept loop instead of `axum::serve` because fault injection must be able to
//!   close a connection without answering, which only a service error does.
//! - `http.rs`: the API request pipeline (latency → auth → rate limit → fault → handler), shared by
//!   every kind.
//! - `kinds.rs`: the table of resource kinds (routes, list shape, references, defaults, pins) and
//!   the route matcher; one generic store and handler serve them all.
//! - `control.rs`: the `/_sim` endpoints, each a 1:1 wrapper of a method here.
//! - `store.rs`, `faults.rs`: state, and fault/limit/counter data.
//! - `validate.rs` (assistants, hand-written: the controller depends on its exact wording; its
//!   property tables live in [`crate::vapi::schema`], shared with the reconcile core) and `dto.rs`
//!   (every other kind, driven by `dtos/dtos.json`, extracted from Vapi's OpenAPI document).
//!
//! All state sits behind one `std::sync::Mutex`; it is never held across an `.await`.

mod control;
mod dto;
mod faults;
mod http;
mod kinds;
mod store;
mod validate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

pub use faults::{Counters, Fault, FaultMode, RateLimit, RequestCount};
pub use validate::{DEFAULT_VAPI_VOICES, LEGACY_VAPI_VOICES};

use faults::{CounterMap, RateLimiter};
use kinds::ASSISTANT;
use store::{ListFilter, Store};

/// Checks a tool body against Vapi's tool DTOs (from the OpenAPI document), as the simulator's
/// `POST /tool` does: the controller validates a tool before any call with the same table.
pub(crate) fn validate_tool(body: &Map<String, Value>) -> Result<(), Vec<String>> {
    match dto::kind_dtos("tool") {
        Some(dtos) => dtos.validate_create(body),
        None => Ok(()),
    }
}

/// The control-API names of the simulated kinds, as [`Simulator::resources`] and
/// `/_sim/resources/{kind}` take them.
pub const KIND_NAMES: &[&str] = &[
    "assistant",
    "tool",
    "phone-number",
    "squad",
    "credential",
    "structured-output",
    "eval",
    "simulation",
    "personality",
    "scenario",
    "simulation-suite",
];

/// Everything the simulator knows; guarded by one mutex.
struct State {
    /// API key → org id.
    keys: HashMap<String, String>,
    latency: Duration,
    limiter: RateLimiter,
    faults: Vec<Fault>,
    counters: CounterMap,
    /// One store per entry of [`kinds::KINDS`], by index.
    stores: Vec<Store>,
    /// The `VapiVoice.voiceId` enum; `None` = free string (the spec after 2026-08-11).
    vapi_voices: Option<Vec<String>>,
    /// Well-formed Azure voice ids that Azure does not have (Vapi answers "Couldn't Find Azure Voice").
    missing_azure_voices: Vec<String>,
}

/// A simulated Vapi API. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Simulator {
    state: Arc<Mutex<State>>,
}

impl Default for Simulator {
    fn default() -> Self {
        Self::new()
    }
}

impl Simulator {
    /// A simulator with no keys, no faults, no latency, no rate limit and the 2026-07-30 Vapi voice
    /// catalogue.
    pub fn new() -> Self {
        let state = State {
            keys: HashMap::new(),
            latency: Duration::ZERO,
            limiter: RateLimiter::default(),
            faults: Vec::new(),
            counters: CounterMap::default(),
            stores: kinds::KINDS.iter().map(|_| Store::default()).collect(),
            vapi_voices: Some(
                DEFAULT_VAPI_VOICES
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            ),
            missing_azure_voices: Vec::new(),
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The state lock. A panic while holding it cannot leave the data half-updated in a way that
    /// matters to a test double, so a poisoned lock is simply taken over.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Accept `Authorization: Bearer <key>` for the org `org_id`.
    pub fn add_key(&self, key: &str, org_id: &str) {
        self.lock().keys.insert(key.to_owned(), org_id.to_owned());
    }

    /// Forget `key`; its later requests get 401.
    pub fn revoke_key(&self, key: &str) {
        self.lock().keys.remove(key);
    }

    /// Delay added before answering every API request (any simulated route).
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    pub fn latency(&self) -> Duration {
        self.lock().latency
    }

    /// Per-key token bucket; `None` removes it. Setting it refills every bucket.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        self.lock().limiter.set(limit);
    }

    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.lock().limiter.get()
    }

    /// Append a fault rule.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// The rules still armed, with their remaining counts.
    pub fn faults(&self) -> Vec<Fault> {
        self.lock().faults.clone()
    }

    pub fn counters(&self) -> Counters {
        self.lock().counters.snapshot()
    }

    pub fn reset_counters(&self) {
        self.lock().counters.clear();
    }

    /// Replace the `vapi` voice catalogue (case-sensitive, printed in this order in the enum error);
    /// `None` accepts any string, as the spec does since 2026-08-11. Retired voices stay rejected by the
    /// business rule either way.
    pub fn set_vapi_voices(&self, voices: Option<Vec<String>>) {
        self.lock().vapi_voices = voices;
    }

    /// Azure voice ids that look right but that Azure does not have: Vapi refuses them only when it
    /// looks them up, which no client-side check can predict.
    pub fn set_missing_azure_voices(&self, voices: Vec<String>) {
        self.lock().missing_azure_voices = voices;
    }

    pub fn vapi_voices(&self) -> Option<Vec<String>> {
        self.lock().vapi_voices.clone()
    }

    /// `org_id`'s assistants exactly as `GET` returns them, newest first, unlimited.
    pub fn assistants(&self, org_id: &str) -> Vec<Value> {
        self.lock().stores[ASSISTANT].list(Some(org_id), &unlimited())
    }

    /// One assistant as `GET` returns it, whatever its org.
    pub fn assistant(&self, id: &str) -> Option<Value> {
        self.lock().stores[ASSISTANT].get(None, id)
    }

    /// Every org's assistants, newest first.
    pub fn all_assistants(&self) -> Vec<Value> {
        self.lock().stores[ASSISTANT].list(None, &unlimited())
    }

    /// Create as if someone used the dashboard: no validation. Server fields are assigned, except that
    /// a valid `createdAt` / `updatedAt` in `body` is kept (handy to backdate). A non-object body is
    /// stored as `{}`. Returns the stored object.
    pub fn create_out_of_band(&self, org_id: &str, body: Value) -> Value {
        self.insert_out_of_band(ASSISTANT, org_id, body)
    }

    /// Shallow top-level replace without validation, bumping `updatedAt` (an explicit `updatedAt` /
    /// `createdAt` in the patch wins). `false` if the assistant does not exist.
    pub fn edit_out_of_band(&self, id: &str, patch: Value) -> bool {
        self.edit_kind(ASSISTANT, id, patch)
    }

    /// Delete regardless of pinning. `false` if missing.
    pub fn delete_out_of_band(&self, id: &str) -> bool {
        self.delete_kind(ASSISTANT, id)
    }

    /// Pin or unpin; a pinned assistant's `DELETE` answers 409. `false` if missing.
    pub fn pin(&self, id: &str, pinned: bool) -> bool {
        self.lock().stores[ASSISTANT].pin(id, pinned)
    }

    // ---------- every kind, by its control-API name ----------
    //
    // `kind` is one of [`KIND_NAMES`]; an unknown name answers `None` / `false`.

    /// `org_id`'s resources of `kind` exactly as `GET` returns them, newest first, unlimited.
    pub fn resources(&self, kind: &str, org_id: &str) -> Option<Vec<Value>> {
        let k = kinds::by_name(kind)?;
        Some(self.lock().stores[k].list(Some(org_id), &unlimited()))
    }

    /// Every org's resources of `kind`, newest first.
    pub fn all_resources(&self, kind: &str) -> Option<Vec<Value>> {
        let k = kinds::by_name(kind)?;
        Some(self.lock().stores[k].list(None, &unlimited()))
    }

    /// One resource as `GET` returns it, whatever its org.
    pub fn resource(&self, kind: &str, id: &str) -> Option<Value> {
        let k = kinds::by_name(kind)?;
        self.lock().stores[k].get(None, id)
    }

    /// Create out of band (no validation, no reference checks), as [`Self::create_out_of_band`]
    /// does for assistants; the kind's server defaults are added (a phone number gets
    /// `status: "active"`, a `vapi` one a `number`).
    pub fn create_resource_out_of_band(
        &self,
        kind: &str,
        org_id: &str,
        body: Value,
    ) -> Option<Value> {
        let k = kinds::by_name(kind)?;
        Some(self.insert_out_of_band(k, org_id, body))
    }

    /// Shallow top-level replace without validation; `false` if missing.
    pub fn edit_resource_out_of_band(&self, kind: &str, id: &str, patch: Value) -> bool {
        kinds::by_name(kind).is_some_and(|k| self.edit_kind(k, id, patch))
    }

    /// Delete regardless of pinning; `false` if missing.
    pub fn delete_resource_out_of_band(&self, kind: &str, id: &str) -> bool {
        kinds::by_name(kind).is_some_and(|k| self.delete_kind(k, id))
    }

    /// Pin or unpin a resource of a kind that can be pinned (tools); `false` if missing or if the
    /// kind cannot be pinned.
    pub fn pin_resource(&self, kind: &str, id: &str, pinned: bool) -> bool {
        kinds::by_name(kind)
            .filter(|&k| kinds::KINDS[k].pinned.is_some())
            .is_some_and(|k| self.lock().stores[k].pin(id, pinned))
    }

    /// A number someone bought for `org_id` on the dashboard (`provider: "vapi"`, active, bound to
    /// nothing). Numbers are bought by people, not by a controller, so tests seed them this way.
    pub fn seed_phone_number(&self, org_id: &str, number: &str) -> Value {
        self.insert_out_of_band(
            kinds::PHONE_NUMBER,
            org_id,
            serde_json::json!({"provider": "vapi", "number": number}),
        )
    }

    fn insert_out_of_band(&self, kind: usize, org_id: &str, body: Value) -> Value {
        let mut body = match body {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let mut st = self.lock();
        let store = &mut st.stores[kind];
        kinds::add_defaults(kind, &mut body, store.next_seq());
        store.insert(org_id, body, true)
    }

    fn edit_kind(&self, kind: usize, id: &str, patch: Value) -> bool {
        let patch = match patch {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.lock().stores[kind]
            .patch(None, id, patch, true)
            .is_some()
    }

    fn delete_kind(&self, kind: usize, id: &str) -> bool {
        matches!(
            self.lock().stores[kind].delete(None, id, false),
            store::DeleteOutcome::Deleted(_)
        )
    }

    /// Serve HTTP/1.1 on `listener` until `shutdown` is cancelled, then finish in-flight requests
    /// (hung ones are released by the same token) for up to five seconds.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let app = http::router(self, shutdown.clone());
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(err) => {
                            // Transient (e.g. out of file descriptors); back off instead of spinning.
                            tracing::warn!(%err, "simulator accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let app = app.clone();
                    let token = shutdown.clone();
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req| http::call(app.clone(), req));
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc);
                        tokio::pin!(conn);
                        tokio::select! {
                            _ = conn.as_mut() => {}
                            () = token.cancelled() => {
                                conn.as_mut().graceful_shutdown();
                                let _ = conn.await;
                            }
                        }
                    });
                }
            }
        }
        drop(listener);
        let drain = async { while conns.join_next().await.is_some() {} };
        // Whatever has not finished by then is aborted when `conns` drops.
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
        Ok(())
    }

    /// Bind `addr` (port 0 picks a free port) and serve in a background task.
    pub async fn start(self, addr: SocketAddr) -> std::io::Result<RunningSimulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let token = CancellationToken::new();
        let handle = tokio::spawn(self.serve(listener, token.clone()));
        Ok(RunningSimulator {
            addr,
            token,
            handle: Some(handle),
        })
    }
}

fn unlimited() -> ListFilter {
    ListFilter {
        limit: usize::MAX,
        ..ListFilter::default()
    }
}

/// A simulator serving in the background. Dropping it stops the server.
pub struct RunningSimulator {
    addr: SocketAddr,
    token: CancellationToken,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningSimulator {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (loopback when bound to an unspecified address).
    pub fn base_url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            self.addr.ip()
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Stop accepting, release hung requests, and wait for the server task.
    pub async fn shutdown(mut self) {
        self.token.cancel();
        if let Some(handle) = self.handle.take() {
            if let Err(err) = handle.await {
                tracing::warn!(%err, "simulator task failed");
            }
        }
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        self.token.cancel();
    }
}
