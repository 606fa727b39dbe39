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
pub async fn list_all_pages<F, Fut, E>(fetch: F) -> Result<Listing, E>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Listing, E>>,
    E: From<VapiError>,
{
    let (items, unreadable) = list_all_pages_into(fetch, |item| item).await?;
    Ok(Listing { items, unreadable })
}

/// [`list_all_pages`], handing each new readable item to `each` as its page arrives and keeping
/// what it returns: a caller can shrink an item before the next page comes (a pass keeps only
/// the digest of an assistant its memo already accounts for).
pub async fn list_all_pages_into<F, Fut, E, T>(
    mut fetch: F,
    mut each: impl FnMut(Item) -> T,
) -> Result<(Vec<T>, Vec<Unreadable>), E>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Listing, E>>,
    E: From<VapiError>,
{
    let mut items = Vec::new();
    let mut unreadable = Vec::new();
    let mut boundary: Option<String> = None;
    // Only an item created at the boundary can come again: the next page asks for
    // `createdAt <= boundary`. So `at_boundary` holds the ids created at the boundary alone
    // (emptied when it moves), not the whole listing's; an unreadable item without a readable
    // `createdAt` could be anywhere, so those are remembered for the whole listing (they are rare).
    let mut at_boundary: HashSet<String> = HashSet::new();
    let mut unplaced: HashSet<String> = HashSet::new();
    loop {
        let page = fetch(boundary.clone()).await?;
        let full = page.items.len() + page.unreadable.len() >= PAGE_LIMIT;
        let asked = boundary.clone();
        // The ids at the boundary this page was asked below; only those can come again on it.
        let before = std::mem::take(&mut at_boundary);
        let mut fresh = 0;
        let mut take = |created: Option<&str>, key: &dyn Fn() -> String| -> bool {
            let Some(created) = created else {
                return unplaced.insert(key());
            };
            if asked.as_deref().is_some_and(|b| created >= b) && before.contains(&key()) {
                return false;
            }
            if boundary.as_deref().is_none_or(|b| created < b) {
                boundary = Some(created.to_owned());
                at_boundary.clear();
            }
            if boundary.as_deref() == Some(created) {
                at_boundary.insert(key());
            }
            true
        };
        for item in page.items {
            if take(Some(&item.created_at), &|| item.id.clone()) {
                fresh += 1;
                items.push(each(item));
            }
        }
        for u in page.unreadable {
            // Without an id an item cannot be told from its repeat on the next page: its error
            // stands in, so the same unreadable item is reported once.
            let key = || u.id.clone().unwrap_or_else(|| format!("\0{}", u.error));
            if take(u.created_at.as_deref(), &key) {
                fresh += 1;
                unreadable.push(u);
            }
        }
        if boundary == asked {
            // The boundary did not move: its earlier ids can still come again.
            at_boundary.extend(before);
        }
        if !full {
            return Ok((items, unreadable));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that pages as Vapi does: the newest `PAGE_LIMIT` items at or below the bound.
    fn server(
        all: &[(String, String)],
        extra: &[&str],
    ) -> impl FnMut(Option<String>) -> std::future::Ready<Result<Listing, VapiError>> {
        let all = all.to_vec();
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        move |bound: Option<String>| {
            let texts: Vec<String> = extra
                .iter()
                .cloned()
                .chain(
                    all.iter()
                        .filter(|(_, c)| bound.as_deref().is_none_or(|b| c.as_str() <= b))
                        .map(|(id, c)| format!(r#"{{"id":"{id}","createdAt":"{c}"}}"#)),
                )
                .take(PAGE_LIMIT)
                .collect();
            std::future::ready(listing::parse_page(
                format!("[{}]", texts.join(",")).as_bytes(),
            ))
        }
    }

    #[tokio::test]
    async fn ties_across_pages_and_repeats_are_listed_once_each() {
        // 2,500 assistants, newest first, in runs of 300 sharing one createdAt: every page ends
        // inside a run, so the next page repeats that run's head.
        let all: Vec<(String, String)> = (0..2500)
            .map(|i| {
                let run = 9 - i / 300;
                (
                    format!("a{i:04}"),
                    format!("2026-01-01T00:00:{run:02}.000Z"),
                )
            })
            .collect();
        // One item with no createdAt, on every page: reported once, not once a page.
        let (items, unreadable) = list_all_pages_into(server(&all, &[r#"{"id":"odd"}"#]), |i| i.id)
            .await
            .expect("the listing pages through its ties");
        let mut want: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
        let mut got = items.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "every assistant once");
        assert_eq!(items.len(), 2500);
        assert_eq!(unreadable.len(), 1, "{unreadable:?}");
    }

    #[tokio::test]
    async fn more_ties_than_a_page_fail_the_listing_rather_than_loop() {
        let all: Vec<(String, String)> = (0..1500)
            .map(|i| (format!("a{i:04}"), "2026-01-01T00:00:00.000Z".to_owned()))
            .collect();
        let err = list_all_pages_into(server(&all, &[]), |i| i.id)
            .await
            .expect_err("a page of one createdAt cannot be paged past");
        assert!(err.to_string().contains("share createdAt"), "{err}");
    }
}
