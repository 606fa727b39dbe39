-- The whole clinic agent: the tools its assistant calls and the phone numbers that ring it, each
-- converged as a resource of its own (src/controller/tools.rs, src/controller/numbers.rs).
--
-- Writer-owned: `tools`, `agents.tool_names`, `phone_numbers`. Controller-owned: `tool_status`,
-- `tool_create_intents`, `phone_number_status`. A dashboard reads the three views at the end.

-- A tool in Vapi's own shape (`type`, `function`, `server`, `messages`, `async`, …), named by the
-- writer: agents reference tools by this name. The name is unique per organization among live
-- rows, so a reference always means one tool.
create table tools (
    id               uuid primary key default gen_random_uuid(),
    org_id           uuid not null references organizations (id),
    name             text not null,
    spec             jsonb not null,
    management_mode  text not null default 'enforce'
        check (management_mode in ('enforce', 'observe', 'paused')),
    generation       bigint not null default 1,
    deleted_at       timestamptz null,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now()
);

create unique index tools_live_name_idx on tools (org_id, name) where deleted_at is null;

-- As for agents: a change to what the controller converges (name, spec, deleted_at) bumps
-- generation; nothing else does, and a hand-set generation is overruled.
create function tools_bump_generation() returns trigger
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

create trigger tools_bump_generation
    before insert or update on tools
    for each row execute function tools_bump_generation();

-- The tools an agent's assistant calls, by name, in order: the controller resolves each to its
-- Vapi id and owns `model.toolIds` (a spec that sets it is refused).
alter table agents add column tool_names text[] not null default '{}';

-- The agents' generation now covers their tool references too (the function keeps its name, so
-- the existing trigger picks it up).
create or replace function agents_bump_generation() returns trigger
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
       or new.tool_names is distinct from old.tool_names
       or new.deleted_at is distinct from old.deleted_at then
        new.generation := old.generation + 1;
        new.updated_at := now();
    else
        new.updated_at := old.updated_at;
    end if;
    return new;
end
$$;

-- Controller-owned: one row per tool, the controller's last conclusion about it.
create table tool_status (
    tool_id              uuid primary key references tools (id) on delete cascade,
    vapi_tool_id         text null,
    key_fingerprint      text null,
    observed_generation  bigint not null,
    state                text not null
        check (state in ('pending', 'synced', 'failed', 'drifted', 'paused', 'deleted', 'blocked')),
    reason               text not null,
    message              text not null,
    drift                text[] not null default '{}',
    -- The body the controller last applied (the third side of the tool's diff).
    applied              jsonb null,
    last_attempt_at      timestamptz null,
    last_success_at      timestamptz null,
    updated_at           timestamptz not null default now()
);

-- A tool create that was decided and may have been sent: written (fenced) with the create's
-- pending journal row before the POST, removed once its outcome is known. No foreign key, as for
-- `create_intents`: the tool it may have made is still the controller's to find.
create table tool_create_intents (
    tool_id       uuid primary key,
    operation_id  uuid not null,
    generation    bigint not null,
    epoch         bigint not null,
    started_at    timestamptz not null default now()
);

-- A binding of a phone number that already exists in Vapi (bought or imported there; the
-- controller never buys, imports or deletes one) to an agent, or to nobody. The number is named
-- by its Vapi id or by its E.164 `number`, found by listing the organization's numbers. Deleting
-- the row stops the controller managing the number; it is left as it is.
create table phone_numbers (
    id                    uuid primary key default gen_random_uuid(),
    org_id                uuid not null references organizations (id),
    vapi_phone_number_id  text null,
    number                text null,
    -- The agent whose assistant the number rings; null: the number rings nobody.
    agent_id              uuid null references agents (id) on delete set null,
    management_mode       text not null default 'enforce'
        check (management_mode in ('enforce', 'observe', 'paused')),
    generation            bigint not null default 1,
    created_at            timestamptz not null default now(),
    updated_at            timestamptz not null default now(),
    constraint phone_numbers_named check (vapi_phone_number_id is not null or number is not null)
);

create unique index phone_numbers_vapi_id_idx on phone_numbers (org_id, vapi_phone_number_id)
    where vapi_phone_number_id is not null;
create unique index phone_numbers_number_idx on phone_numbers (org_id, number)
    where number is not null;

create function phone_numbers_bump_generation() returns trigger
language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        new.generation := 1;
        new.updated_at := now();
        return new;
    end if;
    new.generation := old.generation;
    if new.agent_id is distinct from old.agent_id
       or new.number is distinct from old.number
       or new.vapi_phone_number_id is distinct from old.vapi_phone_number_id then
        new.generation := old.generation + 1;
        new.updated_at := now();
    else
        new.updated_at := old.updated_at;
    end if;
    return new;
end
$$;

create trigger phone_numbers_bump_generation
    before insert or update on phone_numbers
    for each row execute function phone_numbers_bump_generation();

create table phone_number_status (
    phone_number_id      uuid primary key references phone_numbers (id) on delete cascade,
    vapi_phone_number_id text null,
    -- The assistant the number was last seen or made to ring (null: nobody).
    assistant_id         text null,
    key_fingerprint      text null,
    observed_generation  bigint not null,
    state                text not null
        check (state in ('pending', 'synced', 'failed', 'drifted', 'paused')),
    reason               text not null,
    message              text not null,
    last_attempt_at      timestamptz null,
    last_success_at      timestamptz null,
    updated_at           timestamptz not null default now()
);

-- The journal records tool and number writes too: `kind` says which, `resource_id` names the
-- row (`tools.id`, `phone_numbers.id`) and `vapi_id` the object in Vapi.
alter table journal add column kind text not null default 'assistant'
    check (kind in ('assistant', 'tool', 'phone_number'));
alter table journal add column resource_id uuid null;
alter table journal add column vapi_id text null;
create index journal_resource_idx on journal (resource_id, started_at) where resource_id is not null;

-- Saves of tools and bindings wake the controller for a full pass (tools are listed, never
-- looked up one by one). Only statements that changed rows notify: deleting an agent runs the
-- `on delete set null` of `phone_numbers.agent_id` as an UPDATE of no rows, which must not wake
-- a full pass in place of the agents' own notification.
create function vapi_reconciler_notify_changed() returns trigger
language plpgsql as $$
begin
    if exists (select 1 from changed) then
        perform pg_notify('vapi_reconciler', tg_table_name);
    end if;
    return null;
end
$$;

create trigger tools_notify_insert after insert on tools
    referencing new table as changed
    for each statement execute function vapi_reconciler_notify_changed();
create trigger tools_notify_update after update on tools
    referencing new table as changed
    for each statement execute function vapi_reconciler_notify_changed();
create trigger tools_notify_delete after delete on tools
    referencing old table as changed
    for each statement execute function vapi_reconciler_notify_changed();

create trigger phone_numbers_notify_insert after insert on phone_numbers
    referencing new table as changed
    for each statement execute function vapi_reconciler_notify_changed();
create trigger phone_numbers_notify_update after update on phone_numbers
    referencing new table as changed
    for each statement execute function vapi_reconciler_notify_changed();
create trigger phone_numbers_notify_delete after delete on phone_numbers
    referencing old table as changed
    for each statement execute function vapi_reconciler_notify_changed();

-- What a dashboard reads, beside `agent_sync_status`. A row not processed at its current
-- generation is `pending`, never "saved".
create view tool_sync_status as
select t.id                  as tool_id,
       t.org_id,
       t.name,
       t.generation,
       t.deleted_at,
       s.observed_generation,
       s.vapi_tool_id,
       case when s.tool_id is null or s.observed_generation < t.generation then 'pending'
            else s.state end as state,
       case when s.tool_id is null or s.observed_generation < t.generation then 'AwaitingReconcile'
            else s.reason end as reason,
       case when s.tool_id is null or s.observed_generation < t.generation
            then 'Generation ' || t.generation || ' is saved and waiting for the controller.'
            else s.message end as message,
       s.drift,
       s.key_fingerprint,
       s.last_attempt_at,
       s.last_success_at
from tools t
left join tool_status s on s.tool_id = t.id
where t.deleted_at is null or s.state is distinct from 'deleted';

create view phone_number_sync_status as
select p.id                  as phone_number_id,
       p.org_id,
       p.number,
       coalesce(p.vapi_phone_number_id, s.vapi_phone_number_id) as vapi_phone_number_id,
       p.agent_id,
       p.generation,
       s.observed_generation,
       s.assistant_id,
       case when s.phone_number_id is null or s.observed_generation < p.generation then 'pending'
            else s.state end as state,
       case when s.phone_number_id is null or s.observed_generation < p.generation
            then 'AwaitingReconcile' else s.reason end as reason,
       case when s.phone_number_id is null or s.observed_generation < p.generation
            then 'Generation ' || p.generation || ' is saved and waiting for the controller.'
            else s.message end as message,
       s.key_fingerprint,
       s.last_attempt_at,
       s.last_success_at
from phone_numbers p
left join phone_number_status s on s.phone_number_id = p.id;
