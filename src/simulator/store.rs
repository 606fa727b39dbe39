//! The store of one resource kind: what Vapi's database would hold, per org.
//!
//! Design note: each record keeps the response object exactly as `GET` returns it (the request body
//! verbatim plus the server fields `id`, `orgId`, `createdAt`, `updatedAt` and the kind's defaults,
//! which `kinds::add_defaults` adds before the insert), so
//! every read path is a clone. Timestamps are also kept parsed for sorting and filtering; they come from
//! the real clock truncated to milliseconds, so several assistants can share a `createdAt` just as on the
//! real service. Ties are broken by insertion sequence (newest first), which is what a `ORDER BY
//! "createdAt" DESC` over a heap table usually yields and what the reference asks for.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// Now, truncated to millisecond precision like a JavaScript `Date`.
pub fn now_ms() -> DateTime<Utc> {
    to_ms(Utc::now())
}

fn to_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// `2026-03-11T01:17:06.630Z`.
pub fn format_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parse an ISO-8601 date-time as the service would (`IsISO8601` then `new Date(...)`): full RFC 3339,
/// a local date-time (taken as UTC, the server's zone), or a bare date (midnight UTC). Truncated to ms.
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(to_ms(t.with_timezone(&Utc)));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(to_ms(t.and_utc()));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

struct Record {
    org_id: String,
    seq: u64,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
    pinned: bool,
    object: Map<String, Value>,
}

impl Record {
    /// Re-derive the parsed timestamps after an out-of-band edit may have rewritten them.
    fn resync_times(&mut self) {
        if let Some(t) = self
            .object
            .get("createdAt")
            .and_then(Value::as_str)
            .and_then(parse_ts)
        {
            self.created = t;
        }
        if let Some(t) = self
            .object
            .get("updatedAt")
            .and_then(Value::as_str)
            .and_then(parse_ts)
        {
            self.updated = t;
        }
    }
}

/// Bounds for a list route; each is optional.
#[derive(Default, Debug, Clone)]
pub struct ListFilter {
    pub limit: usize,
    pub created_gt: Option<DateTime<Utc>>,
    pub created_lt: Option<DateTime<Utc>>,
    pub created_ge: Option<DateTime<Utc>>,
    pub created_le: Option<DateTime<Utc>>,
    pub updated_gt: Option<DateTime<Utc>>,
    pub updated_lt: Option<DateTime<Utc>>,
    pub updated_ge: Option<DateTime<Utc>>,
    pub updated_le: Option<DateTime<Utc>>,
}

fn within(
    t: DateTime<Utc>,
    gt: Option<DateTime<Utc>>,
    lt: Option<DateTime<Utc>>,
    ge: Option<DateTime<Utc>>,
    le: Option<DateTime<Utc>>,
) -> bool {
    gt.is_none_or(|b| t > b)
        && lt.is_none_or(|b| t < b)
        && ge.is_none_or(|b| t >= b)
        && le.is_none_or(|b| t <= b)
}

/// Outcome of a delete attempt.
pub enum DeleteOutcome {
    Deleted(Value),
    Pinned,
    Missing,
}

#[derive(Default)]
pub struct Store {
    records: HashMap<String, Record>,
    next_seq: u64,
}

impl Store {
    /// Insert `body` for `org_id` with fresh server fields. `keep_times` lets out-of-band creates carry
    /// their own (valid) `createdAt`/`updatedAt`, e.g. to backdate an assistant in a test.
    pub fn insert(
        &mut self,
        org_id: &str,
        mut body: Map<String, Value>,
        keep_times: bool,
    ) -> Value {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let pick = |key: &str| {
            keep_times
                .then(|| body.get(key).and_then(Value::as_str).and_then(parse_ts))
                .flatten()
        };
        let created = pick("createdAt").unwrap_or(now);
        let updated = pick("updatedAt").unwrap_or(created);
        body.insert("id".into(), Value::from(id.clone()));
        body.insert("orgId".into(), Value::from(org_id));
        body.insert("createdAt".into(), Value::from(format_ts(created)));
        body.insert("updatedAt".into(), Value::from(format_ts(updated)));
        let object = Value::Object(body.clone());
        self.next_seq += 1;
        self.records.insert(
            id,
            Record {
                org_id: org_id.to_owned(),
                seq: self.next_seq,
                created,
                updated,
                pinned: false,
                object: body,
            },
        );
        object
    }

    /// The sequence number the next insert gets (unique per store).
    pub fn next_seq(&self) -> u64 {
        self.next_seq + 1
    }

    /// The record, if it exists and (when `org_id` is given) belongs to that org.
    fn find_mut(&mut self, org_id: Option<&str>, id: &str) -> Option<&mut Record> {
        self.records
            .get_mut(&id.to_ascii_lowercase())
            .filter(|r| org_id.is_none_or(|o| r.org_id == o))
    }

    pub fn get(&mut self, org_id: Option<&str>, id: &str) -> Option<Value> {
        self.find_mut(org_id, id)
            .map(|r| Value::Object(r.object.clone()))
    }

    /// Shallow top-level replace: every key of `patch` overwrites the stored value wholesale (nulls
    /// included), omitted keys stay, and `updatedAt` is bumped even when nothing changed. `id` and
    /// `orgId` are never rewritten; out-of-band edits (`raw`) may rewrite the timestamps.
    pub fn patch(
        &mut self,
        org_id: Option<&str>,
        id: &str,
        patch: Map<String, Value>,
        raw: bool,
    ) -> Option<Value> {
        let record = self.find_mut(org_id, id)?;
        let now = now_ms();
        record.updated = now;
        record
            .object
            .insert("updatedAt".into(), Value::from(format_ts(now)));
        for (k, v) in patch {
            if k == "id" || k == "orgId" {
                continue;
            }
            record.object.insert(k, v);
        }
        if raw {
            record.resync_times();
        }
        Some(Value::Object(record.object.clone()))
    }

    pub fn delete(&mut self, org_id: Option<&str>, id: &str, honour_pin: bool) -> DeleteOutcome {
        let Some(record) = self.find_mut(org_id, id) else {
            return DeleteOutcome::Missing;
        };
        if honour_pin && record.pinned {
            return DeleteOutcome::Pinned;
        }
        match self.records.remove(&id.to_ascii_lowercase()) {
            Some(r) => DeleteOutcome::Deleted(Value::Object(r.object)),
            None => DeleteOutcome::Missing,
        }
    }

    pub fn pin(&mut self, id: &str, pinned: bool) -> bool {
        self.find_mut(None, id).map(|r| r.pinned = pinned).is_some()
    }

    /// Newest `createdAt` first, ties newest insertion first; `org_id: None` means every org.
    pub fn list(&self, org_id: Option<&str>, filter: &ListFilter) -> Vec<Value> {
        let mut hits: Vec<&Record> = self
            .records
            .values()
            .filter(|r| org_id.is_none_or(|o| r.org_id == o))
            .filter(|r| {
                within(
                    r.created,
                    filter.created_gt,
                    filter.created_lt,
                    filter.created_ge,
                    filter.created_le,
                )
            })
            .filter(|r| {
                within(
                    r.updated,
                    filter.updated_gt,
                    filter.updated_lt,
                    filter.updated_ge,
                    filter.updated_le,
                )
            })
            .collect();
        hits.sort_by(|a, b| b.created.cmp(&a.created).then(b.seq.cmp(&a.seq)));
        hits.into_iter()
            .take(filter.limit)
            .map(|r| Value::Object(r.object.clone()))
            .collect()
    }
}
