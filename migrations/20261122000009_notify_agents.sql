-- Focused reconciles: a save of a few agents names them in the notification, so the controller
-- reconciles just those at once (one PATCH each, no listing) before any full pass. A statement
-- that changed many rows, or removed rows, asks for everything: a full pass is cheaper then than
-- a long payload (Postgres caps one at 8000 bytes).
--
-- Payload: `agents:<id>,<id>,…` for at most 100 inserted or updated rows, else `agents`.
-- Statement-level with transition tables: one notification per statement, however many rows.

drop trigger agents_notify on agents;

create function vapi_reconciler_notify_agents() returns trigger
language plpgsql as $$
declare
    ids text;
    n integer;
begin
    select count(*), string_agg(id::text, ',') into n, ids
    from (select id from changed limit 101) c;
    if n = 0 then
        return null;
    end if;
    perform pg_notify('vapi_reconciler', case when n <= 100 then 'agents:' || ids else 'agents' end);
    return null;
end
$$;

create trigger agents_notify_insert
    after insert on agents
    referencing new table as changed
    for each statement execute function vapi_reconciler_notify_agents();

create trigger agents_notify_update
    after update on agents
    referencing new table as changed
    for each statement execute function vapi_reconciler_notify_agents();

create trigger agents_notify_delete
    after delete on agents
    for each statement execute function vapi_reconciler_notify();
