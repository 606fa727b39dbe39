//! The Vapi REST client (reqwest): one set of calls for every resource kind ([`Resource`]).
//!
//! Every call takes the key to use, so one client serves every credential. Calls are single
//! attempts: retrying is the controller's decision (a POST must never be retried blindly, since
//! Vapi has no idempotency key and a lost answer may hide a committed create).
//!
//! [`schema`] is pure data (no I/O): the tables derived from Vapi's OpenAPI document, shared by the
//! simulator and the reconcile core.

mod error;
mod listing;
mod resource;
pub(crate) mod schema;

use std::collections::HashSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

pub use error::VapiError;
pub(crate) use listing::top_level_fields;
pub use listing::{Item, Listing, Unreadable};
pub use resource::Resource;

use crate::credentials::ApiKey;

/// Vapi's maximum page size. Its default is 100 and silently hides the rest, so it is always sent.
pub const PAGE_LIMIT: usize = 1000;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// e.g. `https://api.vapi.ai`, no trailing slash needed.
    pub base_url: String,
    pub connect_timeout: Duration,
    /// Bound on a whole call, connect to last byte.
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct VapiClient {
    http: reqwest::Client,
    base_url: String,
    request_timeout: Duration,
    metrics: Option<crate::metrics::Metrics>,
}

impl VapiClient {
    pub fn new(config: &ClientConfig) -> Result<Self, VapiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("vapi-reconciler/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| VapiError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            request_timeout: config.request_timeout,
            metrics: None,
        })
    }

    /// Counts every request by method, route template and status, and times it.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub async fn create(
        &self,
        kind: Resource,
        key: &ApiKey,
        body: &Map<String, Value>,
    ) -> Result<Value, VapiError> {
        self.call(key, Method::POST, kind, None, &[], Some(body))
            .await
    }

    pub async fn get(&self, kind: Resource, key: &ApiKey, id: &str) -> Result<Value, VapiError> {
        self.call(key, Method::GET, kind, Some(id), &[], None).await
    }

    /// Sends whole top-level keys; Vapi replaces each one wholesale and keeps the rest.
    pub async fn update(
        &self,
        kind: Resource,
        key: &ApiKey,
        id: &str,
        patch: &Map<String, Value>,
    ) -> Result<Value, VapiError> {
        self.call(key, Method::PATCH, kind, Some(id), &[], Some(patch))
            .await
    }

    pub async fn delete(&self, kind: Resource, key: &ApiKey, id: &str) -> Result<Value, VapiError> {
        self.call(key, Method::DELETE, kind, Some(id), &[], None)
            .await
    }

    /// One page: up to [`PAGE_LIMIT`] items, newest first, created at or before `created_at_le`.
    /// An item that cannot be read is returned apart ([`Listing::unreadable`]) and counted.
    pub async fn list_page(
        &self,
        kind: Resource,
        key: &ApiKey,
        created_at_le: Option<&str>,
    ) -> Result<Listing, VapiError> {
        let limit = PAGE_LIMIT.to_string();
        let mut query = vec![("limit", limit.as_str())];
        if let Some(t) = created_at_le {
            query.push(("createdAtLe", t));
        }
        let body = self
            .call_bytes(key, Method::GET, kind, None, &query, None)
            .await?;
        let page = listing::parse_page(body.as_deref().unwrap_or_default())?;
        if let Some(m) = &self.metrics {
            m.unreadable_assistants_total
                .inc_by(page.unreadable.len() as u64);
        }
        for u in &page.unreadable {
            tracing::warn!(kind = kind.label(), id = u.id.as_deref().unwrap_or(""), error = %u.error, "listed item cannot be read; it is left alone");
        }
        Ok(page)
    }

    /// Every item of this kind the key can see (see [`list_all_pages`]).
    pub async fn list_all(&self, kind: Resource, key: &ApiKey) -> Result<Listing, VapiError> {
        list_all_pages(
            |boundary| async move { self.list_page(kind, key, boundary.as_deref()).await },
        )
        .await
    }

    async fn call(
        &self,
        key: &ApiKey,
        method: Method,
        kind: Resource,
        id: Option<&str>,
        query: &[(&str, &str)],
        body: Option<&Map<String, Value>>,
    ) -> Result<Value, VapiError> {
        match self.call_bytes(key, method, kind, id, query, body).await? {
            None => Ok(Value::Null),
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| VapiError::Decode(e.to_string()))
            }
        }
    }

    /// The body of a successful answer (`None` for 204), counted and timed.
    async fn call_bytes(
        &self,
        key: &ApiKey,
        method: Method,
        kind: Resource,
        id: Option<&str>,
        query: &[(&str, &str)],
        body: Option<&Map<String, Value>>,
    ) -> Result<Option<bytes::Bytes>, VapiError> {
        let started = std::time::Instant::now();
        let method_label = method.as_str().to_owned();
        let mut status = None;
        let path = match id {
            Some(id) => kind.item(id),
            None => kind.path().to_owned(),
        };
        let result = self
            .send(key, method, &path, query, body, &mut status)
            .await;
        if let Some(m) = &self.metrics {
            // A route template, never the id: labels stay a closed set.
            let route = match id {
                Some(_) => kind.item_route(),
                None => kind.path(),
            };
            m.vapi_request(
                &method_label,
                route,
                status,
                started.elapsed().as_secs_f64(),
            );
        }
        result
    }

    async fn send(
        &self,
        key: &ApiKey,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Map<String, Value>>,
        status_seen: &mut Option<u16>,
    ) -> Result<Option<bytes::Bytes>, VapiError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .header(reqwest::header::AUTHORIZATION, key.bearer());
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        *status_seen = Some(status.as_u16());
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| error::parse_retry_after(v, chrono::Utc::now()));
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        if !status.is_success() {
            return Err(VapiError::from_response(status, retry_after, &bytes));
        }
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    fn transport(&self, e: reqwest::Error) -> VapiError {
        if e.is_timeout() {
            VapiError::Timeout(self.request_timeout)
        } else if e.is_decode() {
            VapiError::Decode(e.without_url().to_string())
        } else {
            VapiError::Transport(error_chain(&e.without_url()))
        }
    }
}

/// Walks every page of `GET /assistant`; `fetch` gets the inclusive `createdAtLe` boundary.
///
/// Vapi has no cursor: pages are walked backwards by `createdAt`. The boundary is inclusive
/// (`createdAtLe`, not `createdAtLt`) because several assistants can share a millisecond and a
/// strict bound would silently skip those cut off by the previous page; the overlap is removed
/// by id. A full page that brings nothing new means more than a page shares one timestamp,
/// which cannot be paged at all, and is reported rather than truncated. Unreadable items count
/// toward a full page and move the boundary when their `createdAt` could be read. The fetcher
/// is a parameter so a caller can pace or guard each page.
pub async fn list_all_pages<F, Fut, E>(mut fetch: F) -> Result<Listing, E>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Listing, E>>,
    E: From<VapiError>,
{
    let mut seen = HashSet::new();
    let mut all = Listing::default();
    let mut boundary: Option<String> = None;
    loop {
        let page = fetch(boundary.clone()).await?;
        let full = page.items.len() + page.unreadable.len() >= PAGE_LIMIT;
        let mut fresh = 0;
        let mut advance = |created: Option<&str>| {
            if let Some(created) = created {
                if boundary.as_deref().is_none_or(|b| created < b) {
                    boundary = Some(created.to_owned());
                }
            }
        };
        for item in page.items {
            advance(Some(&item.created_at));
            if seen.insert(item.id.clone()) {
                fresh += 1;
                all.items.push(item);
            }
        }
        for u in page.unreadable {
            advance(u.created_at.as_deref());
            // Without an id an item cannot be told from its repeat on the next page: its error
            // stands in, so the same unreadable item is reported once.
            let key = u.id.clone().unwrap_or_else(|| format!("\0{}", u.error));
            if seen.insert(key) {
                fresh += 1;
                all.unreadable.push(u);
            }
        }
        if !full {
            return Ok(all);
        }
        if fresh == 0 {
            return Err(E::from(VapiError::Decode(format!(
                "more than {PAGE_LIMIT} assistants share createdAt {}; the list cannot be paged",
                boundary.unwrap_or_default()
            ))));
        }
    }
}

/// reqwest's top-level message is generic ("error sending request"); the cause says what happened.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
