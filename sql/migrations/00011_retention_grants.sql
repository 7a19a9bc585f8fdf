-- +goose Up

-- Each service purges the rows it writes (docs/RETENTION.md), so each role may delete exactly
-- those; and reconcile reports the partner's callbacks that failed for good (issue: the
-- partner does not give up silently), so it may read that one table of the partner's schema.
-- Like 00008, every GRANT runs only when its role and object exist.
-- +goose StatementBegin
CREATE FUNCTION pg_temp.orderflow_grant(privileges text, object text, role text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role) THEN
        RETURN;
    END IF;
    IF object NOT LIKE 'SCHEMA %' AND to_regclass(object) IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('GRANT %s ON %s TO %I', privileges, object, role);
END
$$;
-- +goose StatementEnd

SELECT pg_temp.orderflow_grant('DELETE', 'webhook_deliveries', 'orderflow_deliver');
SELECT pg_temp.orderflow_grant('DELETE', 'webhook_delivery_attempts', 'orderflow_deliver');
SELECT pg_temp.orderflow_grant('DELETE', 'webhook_intake_dead_letters', 'orderflow_deliver');
SELECT pg_temp.orderflow_grant('DELETE', 'projector_dead_letters', 'orderflow_projector');
SELECT pg_temp.orderflow_grant('DELETE', 'reconcile_repairs', 'orderflow_reconcile');
SELECT pg_temp.orderflow_grant('USAGE', 'SCHEMA partner', 'orderflow_reconcile');
SELECT pg_temp.orderflow_grant('SELECT', 'partner.callbacks', 'orderflow_reconcile');

DROP FUNCTION pg_temp.orderflow_grant(text, text, text);

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orderflow_deliver') THEN
        REVOKE DELETE ON webhook_deliveries, webhook_delivery_attempts, webhook_intake_dead_letters FROM orderflow_deliver;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orderflow_projector') THEN
        REVOKE DELETE ON projector_dead_letters FROM orderflow_projector;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orderflow_reconcile') THEN
        REVOKE DELETE ON reconcile_repairs FROM orderflow_reconcile;
        REVOKE SELECT ON partner.callbacks FROM orderflow_reconcile;
        REVOKE USAGE ON SCHEMA partner FROM orderflow_reconcile;
    END IF;
END
$$;
-- +goose StatementEnd
