-- Desired state, written by the product (a dashboard backend), read by the controller.
-- These table and column names are the contract with writers: keep them.

create table organizations (
    id          uuid primary key,
    name        text not null,
    created_at  timestamptz not null default now()
);

create table agents (
    id          uuid primary key default gen_random_uuid(),
    org_id      uuid not null references organizations (id),
    name        text not null,
    -- The assistant body in Vapi's own JSON shape, minus `name` and `metadata` (controller-owned).
    spec        jsonb not null default '{}',
    generation  bigint not null default 1,
    deleted_at  timestamptz null,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

create index agents_org_id_idx on agents (org_id);

-- Writers never touch generation or updated_at: the database owns them. A change to what the
-- controller converges (name, spec, deleted_at) bumps generation; anything else leaves it alone,
-- and a writer that tries to set generation by hand is overruled.
create function agents_bump_generation() returns trigger
language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        new.generation := 1;
        new.updated_at := now();
        return new;
    end if;
    new.generation := old.generation;
    if new.name is distinct from old.name
       or new.spec is distinct from old.spec
       or new.deleted_at is distinct from old.deleted_at then
        new.generation := old.generation + 1;
        new.updated_at := now();
    else
        new.updated_at := old.updated_at;
    end if;
    return new;
end
$$;

create trigger agents_bump_generation
    before insert or update on agents
    for each row execute function agents_bump_generation();

-- Controller-owned: one row per agent, the controller's last conclusion about it.
create table agent_status (
    agent_id             uuid primary key references agents (id) on delete cascade,
    assistant_id         text null,
    -- The agent generation this row describes.
    observed_generation  bigint not null,
    state                text not null check (state in ('pending', 'synced', 'failed')),
    reason               text not null,
    message              text not null,
    -- Field paths that differed between desired and actual at the last change.
    drift                text[] not null default '{}',
    last_attempt_at      timestamptz null,
    last_success_at      timestamptz null,
    updated_at           timestamptz not null default now()
);

-- What a dashboard reads: every live agent with the truth about it. An agent the controller has
-- not processed at its current generation is `pending`, never "saved".
create view agent_sync_status as
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
       s.last_success_at
from agents a
left join agent_status s on s.agent_id = a.id
where a.deleted_at is null;
