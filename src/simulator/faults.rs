//! Fault rules, the per-key rate limiter and the request counters.
//!
//! Design note: these are plain data structures guarded by the simulator's single mutex; the HTTP
//! pipeline (`http.rs`) decides *when* they are consulted (auth → rate limit → faults → handler). The
//! rate limiter reads `tokio::time::Instant` so tests running on a paused clock can refill buckets with
//! `tokio::time::advance` instead of sleeping.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Per-key token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
    /// Send `Retry-After` on its 429s (real Vapi documents none; both behaviours are worth testing).
    pub retry_after: bool,
}

/// What a matching fault rule does to the request.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum FaultMode {
    /// Answer `status` without touching state.
    Respond,
    /// Apply the request, then answer `status` (default 502) instead of the real response.
    CommitThenFail,
    /// Apply the request, then close the connection without a response.
    CommitThenDrop,
    /// Close the connection without applying the request.
    Drop,
    /// Never answer (until the simulator shuts down).
    Hang,
    /// Apply the request, then never answer: the caller dies or times out not knowing.
    CommitThenHang,
}

/// One fault rule. Rules are evaluated in insertion order; the first match with budget left applies.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// `"POST"`, `"GET"`, ... (case-insensitive); `None` = any method.
    #[serde(default)]
    pub method: Option<String>,
    /// A route template (`"/assistant"`, `"/tool/{id}"`, `"/v2/phone-number"`, ...); `None` = any
    /// simulated route.
    #[serde(default)]
    pub route: Option<String>,
    pub mode: FaultMode,
    /// For `Respond` (default 500) and `CommitThenFail` (default 502).
    #[serde(default)]
    pub status: Option<u16>,
    /// Verbatim `Retry-After` header value sent with the fault's response.
    #[serde(default)]
    pub retry_after: Option<String>,
    /// Matching requests it hits; `None` = until cleared.
    #[serde(default)]
    pub count: Option<u32>,
}

impl Fault {
    fn matches(&self, method: &str, route: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.route.as_deref().is_none_or(|r| r == route)
            && self.count != Some(0)
    }
}

/// Take the first matching rule, spending one unit of its budget (removing it when spent).
pub fn take_fault(rules: &mut Vec<Fault>, method: &str, route: &str) -> Option<Fault> {
    let idx = rules.iter().position(|f| f.matches(method, route))?;
    let hit = rules[idx].clone();
    match &mut rules[idx].count {
        Some(n) if *n <= 1 => {
            rules.remove(idx);
        }
        Some(n) => *n -= 1,
        None => {}
    }
    Some(hit)
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per API key.
#[derive(Default)]
pub struct RateLimiter {
    limit: Option<RateLimit>,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    /// Replacing the limit starts every key with a full bucket.
    pub fn set(&mut self, limit: Option<RateLimit>) {
        self.limit = limit;
        self.buckets.clear();
    }

    pub fn get(&self) -> Option<RateLimit> {
        self.limit
    }

    /// `Ok` if `key` may proceed (a token is spent), else `Err(retry_after_seconds)` — whole seconds
    /// until the next token, at least 1.
    pub fn check(&mut self, key: &str) -> Result<(), u64> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let now = Instant::now();
        let burst = f64::from(limit.burst);
        let bucket = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second.max(0.0)).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        if limit.per_second <= 0.0 || burst < 1.0 {
            // The bucket never yields a token; advertise a long wait rather than a bogus one.
            return Err(3600);
        }
        let wait = ((1.0 - bucket.tokens) / limit.per_second).ceil();
        Err((wait as u64).max(1))
    }
}

/// One counter row: requests to a route template that were answered with `status` (0 = the
/// connection was dropped or left hanging).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestCount {
    pub method: String,
    pub route: String,
    pub status: u16,
    pub count: u64,
}

/// Snapshot of the request counters of the simulated routes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Requests to the simulated routes (every kind), by method, route template and status.
    pub requests: Vec<RequestCount>,
    /// Requests to routes the simulator does not have (all answered 404 `Cannot METHOD /path`), by
    /// method and path with id-like segments shown as `{id}`: what a client needs that is missing.
    #[serde(default)]
    pub unknown_routes: Vec<RequestCount>,
    /// The most API requests in progress at once since the last reset: what a client's concurrency
    /// bound looks like from the server's side.
    #[serde(default)]
    pub peak_in_flight: u64,
}

impl Counters {
    /// Requests of `method` (case-insensitive) on route template `route`, any status.
    pub fn total(&self, method: &str, route: &str) -> u64 {
        self.requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.route == route)
            .map(|r| r.count)
            .sum()
    }

    /// Requests of `method` (case-insensitive) on routes whose template starts with `prefix`
    /// (`"/tool"` counts `/tool` and `/tool/{id}`), any status.
    pub fn total_under(&self, method: &str, prefix: &str) -> u64 {
        self.requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.route.starts_with(prefix))
            .map(|r| r.count)
            .sum()
    }

    /// Requests to routes the simulator does not have, any method.
    pub fn unknown_total(&self) -> u64 {
        self.unknown_routes.iter().map(|r| r.count).sum()
    }

    /// POST + PATCH + DELETE on the simulated routes, any status.
    pub fn writes(&self) -> u64 {
        self.requests
            .iter()
            .filter(|r| matches!(r.method.as_str(), "POST" | "PATCH" | "DELETE"))
            .map(|r| r.count)
            .sum()
    }

    /// Requests answered with `status` (0 = dropped or hung), any route.
    pub fn with_status(&self, status: u16) -> u64 {
        self.requests
            .iter()
            .filter(|r| r.status == status)
            .map(|r| r.count)
            .sum()
    }
}

/// Distinct unknown-route rows kept before new labels are lumped together.
pub const MAX_UNKNOWN_ROWS: usize = 256;

fn rows(map: &BTreeMap<(String, String, u16), u64>) -> Vec<RequestCount> {
    map.iter()
        .map(|((method, route, status), count)| RequestCount {
            method: method.clone(),
            route: route.clone(),
            status: *status,
            count: *count,
        })
        .collect()
}

/// Live counters, keyed so that the snapshot comes out sorted and stable.
#[derive(Default)]
pub struct CounterMap {
    counts: BTreeMap<(String, String, u16), u64>,
    unknown: BTreeMap<(String, String, u16), u64>,
    in_flight: u64,
    peak_in_flight: u64,
}

impl CounterMap {
    pub fn enter(&mut self) {
        self.in_flight += 1;
        self.peak_in_flight = self.peak_in_flight.max(self.in_flight);
    }

    pub fn leave(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    pub fn record(&mut self, method: &str, route: &str, status: u16) {
        *self
            .counts
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
    }

    /// Count a request to a route the simulator does not have. Past [`MAX_UNKNOWN_ROWS`] distinct
    /// labels, further new ones share one `{other}` row, so memory stays bounded.
    pub fn record_unknown(&mut self, method: &str, template: String) {
        let mut key = (method.to_owned(), template, 404);
        if !self.unknown.contains_key(&key) && self.unknown.len() >= MAX_UNKNOWN_ROWS {
            key.1 = "{other}".to_owned();
        }
        *self.unknown.entry(key).or_default() += 1;
    }

    pub fn snapshot(&self) -> Counters {
        Counters {
            peak_in_flight: self.peak_in_flight,
            requests: rows(&self.counts),
            unknown_routes: rows(&self.unknown),
        }
    }

    /// Forgets counts and the peak; requests still in progress stay counted as in flight.
    pub fn clear(&mut self) {
        self.counts.clear();
        self.unknown.clear();
        self.peak_in_flight = self.in_flight;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_budget_is_spent_in_order() {
        let mut rules = vec![
            Fault {
                method: Some("post".into()),
                route: None,
                mode: FaultMode::Respond,
                status: Some(503),
                retry_after: None,
                count: Some(1),
            },
            Fault {
                method: None,
                route: Some("/assistant".into()),
                mode: FaultMode::Drop,
                status: None,
                retry_after: None,
                count: None,
            },
        ];
        assert_eq!(take_fault(&mut rules, "GET", "/assistant/{id}"), None);
        assert_eq!(
            take_fault(&mut rules, "POST", "/assistant").map(|f| f.mode),
            Some(FaultMode::Respond)
        );
        assert_eq!(rules.len(), 1);
        assert_eq!(
            take_fault(&mut rules, "POST", "/assistant").map(|f| f.mode),
            Some(FaultMode::Drop)
        );
        assert_eq!(rules.len(), 1);
    }
}
