-- The operator console (src/console/): what its pages read, and the indexes that keep them fast
-- at 100,000 agents.
--
-- `agent_sync_status` gains three columns at its end (existing readers see the same columns in
-- the same order): when the agent was last saved, its management mode and the tools it names.
-- The console's "not in sync since" is the later of the last save and the last success.

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
       s.normalizations,
       a.updated_at          as saved_at,
       a.management_mode,
       a.tool_names
from agents a
left join agent_status s on s.agent_id = a.id
where a.deleted_at is null;

-- The agents list sorts live agents by name and pages through them.
create index agents_live_name_idx on agents (name, id) where deleted_at is null;
-- The fleet page's oldest unresolved agent and failing organizations look only at rows that are
-- not synced: a small share of the fleet on a good day.
create index agent_status_unresolved_idx on agent_status (state, agent_id) where state <> 'synced';
