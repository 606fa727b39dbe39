-- Three-way drift: what the controller last applied to each assistant, and each difference
-- classified (the spec changed, or the assistant was changed in Vapi).

alter table agent_status add column applied jsonb null;
alter table agent_status add column drift_detail jsonb not null default '[]';
-- Voice rewrites made before writing, as `original → applied (rule)`.
alter table agent_status add column normalizations text[] not null default '{}';

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
       s.key_fingerprint,
       s.drift_detail,
       s.normalizations
from agents a
left join agent_status s on s.agent_id = a.id
where a.deleted_at is null;
