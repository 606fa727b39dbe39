-- Duplicate safety: management modes, create intents, the write journal, orphan sightings and
-- the blast-radius guard. Everything here but `agents.management_mode` is controller-owned.

-- Writer-owned: how far the controller may act on the agent. Not part of `generation`: a pass
-- looks at every agent anyway, so a mode change takes effect on the next pass.
alter table agents
    add column management_mode text not null default 'enforce'
        check (management_mode in ('enforce', 'observe', 'paused'));

alter table agent_status drop constraint agent_status_state_check;
alter table agent_status add constraint agent_status_state_check
    check (state in ('pending', 'synced', 'failed', 'drifted', 'paused', 'deleted'));

-- A create that was decided and may have been sent. Written (fenced) before the POST, removed
-- once its outcome is known. No foreign key: an intent must outlive a purged agent row, because
-- the assistant it may have created is still the controller's to find.
create table create_intents (
    agent_id      uuid primary key,
    operation_id  uuid not null,
    generation    bigint not null,
    epoch         bigint not null,
    started_at    timestamptz not null default now()
);

-- Append-only: every Vapi write (and every adoption) the controller made, with its outcome.
-- Not fenced: it records what happened, including anything a deposed leader still did.
create table journal (
    id            bigserial primary key,
    started_at    timestamptz not null,
    finished_at   timestamptz not null,
    epoch         bigint not null,
    holder        text not null,
    org_id        uuid null,
    agent_id      uuid null,
    generation    bigint null,
    action        text not null check (action in ('create', 'recreate', 'patch', 'delete', 'adopt')),
    outcome       text not null check (outcome in ('ok', 'failed', 'unknown', 'gone')),
    assistant_id  text null,
    operation_id  uuid null,
    -- Why: the drifted fields, the duplicate or orphan it removed, or the error kind and message.
    why           text not null
);

create index journal_started_at_idx on journal (started_at);
create index journal_agent_id_idx on journal (agent_id, started_at);

-- Marked assistants whose agent no longer exists, with when each was first seen (for the grace).
create table orphan_sightings (
    assistant_id   text primary key,
    agent_id       uuid not null,
    first_seen_at  timestamptz not null default now(),
    last_seen_at   timestamptz not null default now()
);

-- Passes the blast-radius guard stopped, and the operator's confirmations.
create table guard_blocks (
    id            bigserial primary key,
    created_at    timestamptz not null default now(),
    last_seen_at  timestamptz not null default now(),
    epoch         bigint not null,
    deletes       bigint not null,
    recreates     bigint not null,
    fleet         bigint not null,
    "limit"       bigint not null,
    -- A few of the actions, so the operator sees what would go.
    sample        jsonb not null default '[]',
    confirmed_at  timestamptz null,
    confirmed_by  text null,
    expires_at    timestamptz null
);

-- What a dashboard reads for deleted agents. `purge_safe` says the writer may delete the row:
-- the controller has deleted every assistant of the current generation and confirmed it gone.
create view agent_deletion_status as
select a.id          as agent_id,
       a.org_id,
       a.name,
       a.deleted_at,
       a.generation,
       s.observed_generation,
       s.assistant_id,
       case when s.agent_id is null or s.observed_generation < a.generation then 'pending'
            else s.state end as state,
       case when s.agent_id is null or s.observed_generation < a.generation then 'AwaitingDeletion'
            else s.reason end as reason,
       case when s.agent_id is null or s.observed_generation < a.generation
            then 'Deleted at generation ' || a.generation || '; waiting for the controller.'
            else s.message end as message,
       coalesce(s.state = 'deleted' and s.observed_generation = a.generation, false) as purge_safe
from agents a
left join agent_status s on s.agent_id = a.id
where a.deleted_at is not null;
