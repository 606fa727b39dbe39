-- Credentials: which key each agent's calls used, and the health of every key in use.

-- Fingerprint (SHA-256/8) of the key used for the agent's last outcome; never the key.
alter table agent_status add column key_fingerprint text null;

create or replace view agent_sync_status as
select a.id                  as agent_id,
       a.org_id,
       a.name,
       a.generation,
       s.observed_generation,
       s.assistant_id,
       case when s.agent_id is null or s.observed_generation < a.generation then 'pending'
            else s.state end as state,
       case when s.agent_id is null or s.observed_generation < a.generation then 'AwaitingReconcile'
            else s.reason end as reason,
       case when s.agent_id is null or s.observed_generation < a.generation
            then 'Generation ' || a.generation || ' is saved and waiting for the controller.'
            else s.message end as message,
       s.drift,
       s.last_attempt_at,
       s.last_success_at,
       s.key_fingerprint
from agents a
left join agent_status s on s.agent_id = a.id
where a.deleted_at is null;

-- One row per key the leader used, written after every pass: breaker and quarantine state for
-- operators and `vapi-reconciler breaker list`. `reset_requested_at` is the operator's side:
-- `breaker reset` sets it and the leader applies it (and stamps `reset_applied_at`).
create table credential_health (
    fingerprint           text primary key,
    scope                 text not null,
    breaker_state         text not null,
    consecutive_failures  integer not null,
    open_until            timestamptz null,
    last_transition_at    timestamptz null,
    rejected_at           timestamptz null,
    rejected_status       integer null,
    rejected_message      text null,
    reset_requested_at    timestamptz null,
    reset_applied_at      timestamptz null,
    updated_at            timestamptz not null default now()
);
