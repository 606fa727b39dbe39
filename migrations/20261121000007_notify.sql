-- Event-driven reconciles: a writer's change wakes the controller at once instead of at the next
-- periodic pass. One channel, `vapi_reconciler`, payload = the table that changed; a pass always
-- looks at everything, so the payload is only for logs. Statement-level where writers change many
-- rows at once (Postgres folds identical notifications within a transaction anyway).

create function vapi_reconciler_notify() returns trigger
language plpgsql as $$
begin
    perform pg_notify('vapi_reconciler', tg_table_name);
    return null;
end
$$;

create trigger agents_notify
    after insert or update or delete on agents
    for each statement execute function vapi_reconciler_notify();

create trigger org_credentials_notify
    after insert or update or delete on org_credentials
    for each statement execute function vapi_reconciler_notify();

-- Operators' requests (not the controller's own writes, which would wake it in a loop).
create trigger credential_health_reset_notify
    after update of reset_requested_at on credential_health
    for each row when (new.reset_requested_at is distinct from old.reset_requested_at)
    execute function vapi_reconciler_notify();

create trigger guard_blocks_confirm_notify
    after update of confirmed_at on guard_blocks
    for each row when (new.confirmed_at is distinct from old.confirmed_at)
    execute function vapi_reconciler_notify();
