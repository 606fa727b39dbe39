//! `credential_health`: the leader's view of every key in use, and operators' reset requests.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::leader::Fence;

/// One key's breaker and quarantine state.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct CredentialHealth {
    pub fingerprint: String,
    pub scope: String,
    pub breaker_state: String,
    pub consecutive_failures: i32,
    pub open_until: Option<DateTime<Utc>>,
    pub last_transition_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub rejected_status: Option<i32>,
    pub rejected_message: Option<String>,
}

impl Store {
    /// Upserts the state of every key in use and returns the fingerprints with a breaker reset
    /// requested since the last one applied (they are stamped applied here).
    pub async fn record_credential_health(
        &self,
        fences: &[Fence],
        rows: &[CredentialHealth],
    ) -> Result<Vec<String>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let col = |f: fn(&CredentialHealth) -> String| rows.iter().map(f).collect::<Vec<_>>();
        let mut tx = self.fenced(fences).await?;
        let reset: Vec<String> = sqlx::query_scalar::<_, Option<String>>(
            "insert into credential_health as h
                 (fingerprint, scope, breaker_state, consecutive_failures, open_until,
                  last_transition_at, rejected_at, rejected_status, rejected_message, updated_at)
             select u.*, now()
             from unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::timestamptz[],
                         $6::timestamptz[], $7::timestamptz[], $8::int4[], $9::text[]) as u
             on conflict (fingerprint) do update set
                 scope = excluded.scope,
                 breaker_state = excluded.breaker_state,
                 consecutive_failures = excluded.consecutive_failures,
                 open_until = excluded.open_until,
                 last_transition_at = excluded.last_transition_at,
                 rejected_at = excluded.rejected_at,
                 rejected_status = excluded.rejected_status,
                 rejected_message = excluded.rejected_message,
                 reset_applied_at = case
                     when h.reset_requested_at > coalesce(h.reset_applied_at, '-infinity')
                     then now() else h.reset_applied_at end,
                 updated_at = now()
             returning case when reset_applied_at = now() then fingerprint end",
        )
        .bind(col(|r| r.fingerprint.clone()))
        .bind(col(|r| r.scope.clone()))
        .bind(col(|r| r.breaker_state.clone()))
        .bind(
            rows.iter()
                .map(|r| r.consecutive_failures)
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.open_until).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.last_transition_at)
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.rejected_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.rejected_status).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.rejected_message.clone())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .flatten()
        .collect();
        tx.commit().await?;
        Ok(reset)
    }

    /// Every key the leader has reported, most recently updated first.
    pub async fn credential_health(&self) -> Result<Vec<CredentialHealth>, StoreError> {
        Ok(sqlx::query_as(
            "select fingerprint, scope, breaker_state, consecutive_failures, open_until,
                    last_transition_at, rejected_at, rejected_status, rejected_message
             from credential_health order by updated_at desc, fingerprint",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Asks the leader to reset a key's breaker; `false` when no such key is known.
    pub async fn request_breaker_reset(&self, fingerprint: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "update credential_health set reset_requested_at = now() where fingerprint = $1",
        )
        .bind(fingerprint)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
