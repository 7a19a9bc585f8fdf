-- +goose Up

-- A webhook endpoint's whole life, as partners expect it (docs/WEBHOOKS.md): updated, rate
-- limited, deleted, and disabled on its own after a long continuous failure.
--
-- rate_limit: deliveries per second the deliverers may send to the endpoint, all processes
--   together (NULL: no limit beyond the per-endpoint slots). rate_next_at is the schedule that
--   enforces it: each send reserves the next free slot with one UPDATE of this row, so several
--   deliverers share one budget.
-- failing_since: when the endpoint's current run of failed attempts began, NULL after a
--   success. Kept by the trigger below; a deliverer disables an endpoint whose failing_since
--   is older than its -auto-disable-after.
-- deleted_at: a deleted endpoint is kept, disabled, for the audit trail of its deliveries and
--   attempts (which reference it); the API answers 404 for it everywhere.
ALTER TABLE webhook_endpoints
    ADD COLUMN rate_limit    integer CHECK (rate_limit BETWEEN 1 AND 10000),
    ADD COLUMN rate_next_at  timestamptz,
    ADD COLUMN failing_since timestamptz,
    ADD COLUMN deleted_at    timestamptz,
    ADD CONSTRAINT webhook_endpoints_deleted_is_disabled CHECK (deleted_at IS NULL OR disabled_at IS NOT NULL);

-- failing_since follows every recorded attempt, whoever records it, in the transaction that
-- records it. Per endpoint of the batch: a success ends the run of failures, and a failure that
-- started after the batch's last success begins a new one; failures alone keep the run that is
-- going, or begin one. Only changes are written, so a healthy or a steadily failing endpoint costs
-- no UPDATE, and endpoints are updated in id order, so two batches lock them in the same order.
-- +goose StatementBegin
CREATE FUNCTION webhook_next_failing_since(current timestamptz, last_success timestamptz, first_failure timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN first_failure IS NULL THEN NULL
                WHEN last_success IS NOT NULL THEN first_failure
                ELSE coalesce(current, first_failure) END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION webhook_endpoint_health() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        WITH a AS (
            SELECT d.endpoint_id, a.started_at, a.outcome = 'success' AS ok
            FROM new_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
        ), s AS (
            SELECT endpoint_id, max(started_at) FILTER (WHERE ok) AS last_success FROM a GROUP BY endpoint_id
        )
        SELECT s.endpoint_id, s.last_success,
               (SELECT min(a.started_at) FROM a WHERE a.endpoint_id = s.endpoint_id AND NOT a.ok
                   AND (s.last_success IS NULL OR a.started_at > s.last_success)) AS first_failure
        FROM s ORDER BY s.endpoint_id
    LOOP
        UPDATE webhook_endpoints
        SET failing_since = webhook_next_failing_since(failing_since, r.last_success, r.first_failure)
        WHERE id = r.endpoint_id
          AND failing_since IS DISTINCT FROM webhook_next_failing_since(failing_since, r.last_success, r.first_failure);
    END LOOP;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER webhook_endpoint_health AFTER INSERT ON webhook_delivery_attempts
    REFERENCING NEW TABLE AS new_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_endpoint_health();

-- +goose StatementBegin
CREATE FUNCTION pg_temp.orderflow_grant(privileges text, object text, role text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role) THEN
        EXECUTE format('GRANT %s ON %s TO %I', privileges, object, role);
    END IF;
END
$$;
-- +goose StatementEnd

-- The API (its table-wide grants on webhook_endpoints cover the new columns) now also queues a
-- test event as a delivery and lists attempts.
SELECT pg_temp.orderflow_grant('INSERT', 'webhook_deliveries', 'orderflow_api');
SELECT pg_temp.orderflow_grant('SELECT', 'webhook_delivery_attempts', 'orderflow_api');
-- The deliverer reserves rate-limit slots, and its attempts move failing_since (the trigger runs
-- with the privileges of the role that inserts the attempts). It still may not change an
-- endpoint's URL, types, secrets or limit.
SELECT pg_temp.orderflow_grant('UPDATE (rate_next_at, failing_since)', 'webhook_endpoints', 'orderflow_deliver');

DROP FUNCTION pg_temp.orderflow_grant(text, text, text);

-- +goose Down
DROP TRIGGER webhook_endpoint_health ON webhook_delivery_attempts;
DROP FUNCTION webhook_endpoint_health();
DROP FUNCTION webhook_next_failing_since(timestamptz, timestamptz, timestamptz);
ALTER TABLE webhook_endpoints
    DROP CONSTRAINT webhook_endpoints_deleted_is_disabled,
    DROP COLUMN deleted_at,
    DROP COLUMN failing_since,
    DROP COLUMN rate_next_at,
    DROP COLUMN rate_limit;
