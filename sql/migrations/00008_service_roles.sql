-- +goose Up

-- One PostgreSQL role per service, each allowed exactly what its code does (docs/SECURITY.md
-- lists them): a service that is taken over, or a bug, can then touch only its own tables.
-- The roles are cluster-wide and shared by every orderflow database of the cluster; the grants
-- below are this database's. Services log in with these roles and no password where the
-- cluster trusts local connections (the local stack); elsewhere give each a password or a
-- certificate (ALTER ROLE orderflow_api PASSWORD ...).
--
-- Creating roles needs CREATEROLE (REPLICATION needs superuser). A migrator without them
-- skips that step with a notice and grants to the roles an administrator created.
-- +goose StatementBegin
DO $$
DECLARE
    r text;
    can_create boolean;
    super boolean;
BEGIN
    SELECT rolcreaterole OR rolsuper, rolsuper INTO can_create, super FROM pg_roles WHERE rolname = current_user;
    FOREACH r IN ARRAY ARRAY['orderflow_api', 'orderflow_capture', 'orderflow_projector',
                             'orderflow_deliver', 'orderflow_partner', 'orderflow_reconcile'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            IF NOT can_create THEN
                RAISE NOTICE 'role % does not exist and % may not create it: create it, then grant', r, current_user;
                CONTINUE;
            END IF;
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- another database of the cluster migrated at the same moment
            END;
        END IF;
    END LOOP;
    IF super AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orderflow_capture' AND NOT rolreplication) THEN
        ALTER ROLE orderflow_capture REPLICATION;
    END IF;
END
$$;
-- +goose StatementEnd

-- grant runs one GRANT when the role (and the object) exist, so this migration works on a
-- cluster whose roles an administrator manages, and whatever migrations ran before it.
-- +goose StatementBegin
CREATE FUNCTION pg_temp.orderflow_grant(privileges text, object text, role text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role) THEN
        RETURN;
    END IF;
    IF object NOT LIKE 'SCHEMA %' AND object NOT LIKE 'ALL %' AND to_regclass(regexp_replace(object, '^SEQUENCE ', '')) IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('GRANT %s ON %s TO %I', privileges, object, role);
END
$$;
-- +goose StatementEnd

-- The API: orders and everything their transactions write, the read model (read only), API
-- keys (read only: keys are made by 'orderflow apikey' with the owner's connection), webhook
-- endpoints and the deliveries an admin disables or replays. Not the partner's schema, not the
-- projector's or reconcile's tables, and no DELETE but on expired idempotency keys. Outbox rows
-- it only inserts.
SELECT pg_temp.orderflow_grant('SELECT, INSERT, UPDATE', 'orders', 'orderflow_api');
SELECT pg_temp.orderflow_grant('SELECT, INSERT', 'order_items', 'orderflow_api');
SELECT pg_temp.orderflow_grant('SELECT, INSERT, UPDATE', 'inventory', 'orderflow_api');
SELECT pg_temp.orderflow_grant('SELECT, INSERT, UPDATE, DELETE', 'idempotency_keys', 'orderflow_api');
SELECT pg_temp.orderflow_grant('INSERT', 'outbox', 'orderflow_api');
SELECT pg_temp.orderflow_grant('USAGE', 'SEQUENCE outbox_seq_seq', 'orderflow_api');
SELECT pg_temp.orderflow_grant('SELECT', 'order_summary', 'orderflow_api');
SELECT pg_temp.orderflow_grant('SELECT', 'api_clients', 'orderflow_api');
SELECT pg_temp.orderflow_grant('SELECT, INSERT, UPDATE', 'webhook_endpoints', 'orderflow_api');
SELECT pg_temp.orderflow_grant('SELECT, UPDATE', 'webhook_deliveries', 'orderflow_api');

-- Capture: REPLICATION (above) to stream the slot, and the outbox only: it reads rows when it
-- re-publishes after a lost slot and deletes them for retention. The publication is created
-- here, by the table's owner, since creating one needs ownership of the table.
SELECT pg_temp.orderflow_grant('SELECT, DELETE', 'outbox', 'orderflow_capture');
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'orderflow_outbox') THEN
        CREATE PUBLICATION orderflow_outbox FOR TABLE outbox WITH (publish = 'insert');
    END IF;
END
$$;
-- +goose StatementEnd

-- The projector: its read model and its dead letters, and of orders only the owner of each
-- order, which it copies into the read model so scoped reads stay one query.
SELECT pg_temp.orderflow_grant('SELECT, INSERT, UPDATE', 'order_summary', 'orderflow_projector');
SELECT pg_temp.orderflow_grant('SELECT, INSERT', 'projector_dead_letters', 'orderflow_projector');
SELECT pg_temp.orderflow_grant('SELECT (id, client_id)', 'orders', 'orderflow_projector');

-- The deliverer: its deliveries and their attempts, the endpoints it sends to (it may disable
-- one that answers 410, and change nothing else of it), and its intake's dead letters.
SELECT pg_temp.orderflow_grant('SELECT, UPDATE (disabled_at, disabled_reason, updated_at)', 'webhook_endpoints', 'orderflow_deliver');
SELECT pg_temp.orderflow_grant('SELECT, INSERT, UPDATE', 'webhook_deliveries', 'orderflow_deliver');
SELECT pg_temp.orderflow_grant('SELECT, INSERT', 'webhook_delivery_attempts', 'orderflow_deliver');
SELECT pg_temp.orderflow_grant('USAGE', 'SEQUENCE webhook_delivery_attempts_id_seq', 'orderflow_deliver');
SELECT pg_temp.orderflow_grant('SELECT, INSERT', 'webhook_intake_dead_letters', 'orderflow_deliver');

-- The mock partner is another company: its own schema, and nothing of orderflow's.
SELECT pg_temp.orderflow_grant('USAGE', 'SCHEMA partner', 'orderflow_partner');
SELECT pg_temp.orderflow_grant('SELECT, INSERT, UPDATE, DELETE', 'ALL TABLES IN SCHEMA partner', 'orderflow_partner');
SELECT pg_temp.orderflow_grant('USAGE', 'ALL SEQUENCES IN SCHEMA partner', 'orderflow_partner');
-- Tables later migrations add to the partner's schema are the partner's too.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orderflow_partner') THEN
        ALTER DEFAULT PRIVILEGES IN SCHEMA partner GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO orderflow_partner;
        ALTER DEFAULT PRIVILEGES IN SCHEMA partner GRANT USAGE ON SEQUENCES TO orderflow_partner;
    END IF;
END
$$;
-- +goose StatementEnd

-- Reconcile: reads the three views of an order (orders, read model, deliveries) and repairs
-- through the outbox. It reads an order FOR SHARE while it repairs it, which PostgreSQL allows
-- only with an UPDATE privilege: updated_at alone is granted for that.
SELECT pg_temp.orderflow_grant('SELECT, UPDATE (updated_at)', 'orders', 'orderflow_reconcile');
SELECT pg_temp.orderflow_grant('SELECT', 'order_items', 'orderflow_reconcile');
SELECT pg_temp.orderflow_grant('SELECT', 'order_summary', 'orderflow_reconcile');
SELECT pg_temp.orderflow_grant('SELECT, INSERT', 'outbox', 'orderflow_reconcile');
SELECT pg_temp.orderflow_grant('USAGE', 'SEQUENCE outbox_seq_seq', 'orderflow_reconcile');
SELECT pg_temp.orderflow_grant('SELECT, INSERT, UPDATE', 'reconcile_repairs', 'orderflow_reconcile');
SELECT pg_temp.orderflow_grant('SELECT', 'webhook_endpoints', 'orderflow_reconcile');
SELECT pg_temp.orderflow_grant('SELECT', 'webhook_deliveries', 'orderflow_reconcile');
SELECT pg_temp.orderflow_grant('SELECT', 'projector_dead_letters', 'orderflow_reconcile');

DROP FUNCTION pg_temp.orderflow_grant(text, text, text);

-- +goose Down
-- The roles are the cluster's and other databases may use them: only this database's grants go.
-- +goose StatementBegin
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['orderflow_api', 'orderflow_capture', 'orderflow_projector',
                             'orderflow_deliver', 'orderflow_partner', 'orderflow_reconcile'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I', r);
            EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM %I', r);
            EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA partner FROM %I', r);
            EXECUTE format('REVOKE ALL ON SCHEMA partner FROM %I', r);
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orderflow_partner') THEN
        ALTER DEFAULT PRIVILEGES IN SCHEMA partner REVOKE ALL ON TABLES FROM orderflow_partner;
        ALTER DEFAULT PRIVILEGES IN SCHEMA partner REVOKE ALL ON SEQUENCES FROM orderflow_partner;
    END IF;
END
$$;
-- +goose StatementEnd
DROP PUBLICATION IF EXISTS orderflow_outbox;
