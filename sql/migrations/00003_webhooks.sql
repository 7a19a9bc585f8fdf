-- +goose Up

-- Webhook endpoints are data: an admin registers a URL with the event types it wants and gets
-- a Standard Webhooks secret back. During a rotation the previous secret keeps signing (a
-- second signature in the same header) until previous_secret_expires_at, so a partner can
-- switch secrets without losing a single delivery.
CREATE TABLE webhook_endpoints (
    id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    url                         text NOT NULL CHECK (url ~ '^https?://'),
    event_types                 text[] NOT NULL CHECK (cardinality(event_types) >= 1),
    secret                      text NOT NULL CHECK (secret LIKE 'whsec\_%'),
    previous_secret             text CHECK (previous_secret LIKE 'whsec\_%'),
    previous_secret_expires_at  timestamptz,
    disabled_at                 timestamptz,
    disabled_reason             text,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_endpoints_previous_expires
        CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL))
);
CREATE INDEX webhook_endpoints_event_types_idx ON webhook_endpoints USING gin (event_types)
    WHERE disabled_at IS NULL;

-- One row per (event, endpoint): the unique key is what makes the Kafka intake idempotent, so a
-- redelivered record (offset committed late, rebalance) inserts nothing new. payload holds the
-- record value byte for byte, because the signature covers the exact body sent.
--
-- next_attempt_at doubles as the lease: claiming a delivery pushes it past the attempt's
-- timeout, so a deliverer that dies mid-attempt loses its claim and another one retries.
-- claim_token guards the write-back: a deliverer whose lease ran out cannot overwrite the
-- outcome of the deliverer that took over.
CREATE TABLE webhook_deliveries (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id          text NOT NULL,
    endpoint_id       uuid NOT NULL REFERENCES webhook_endpoints (id),
    event_type        text NOT NULL,
    subject           text NOT NULL,
    event_time        timestamptz,
    payload           bytea NOT NULL,
    state             text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'succeeded', 'dead')),
    -- attempts counts the current cycle; a replay starts a new cycle (attempts 0, new
    -- cycle_started_at) while webhook_delivery_attempts keeps every attempt ever made.
    attempts          integer NOT NULL DEFAULT 0,
    cycle_started_at  timestamptz NOT NULL DEFAULT now(),
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    claim_token       uuid,
    last_status       integer,
    last_error        text,
    last_attempt_at   timestamptz,
    succeeded_at      timestamptz,
    dead_at           timestamptz,
    replays           integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_dead_idx ON webhook_deliveries (dead_at, id) WHERE state = 'dead';
-- The sender claims per endpoint (fairness: each endpoint gets its own slots), so it walks
-- this index once per enabled endpoint instead of sorting every due delivery.
CREATE INDEX webhook_deliveries_endpoint_due_idx ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE state = 'pending';

-- Every attempt, for audit: what was answered, how long it took, what went wrong. Never the
-- response body or the signature.
CREATE TABLE webhook_delivery_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  uuid NOT NULL REFERENCES webhook_deliveries (id),
    attempt      integer NOT NULL,
    started_at   timestamptz NOT NULL,
    latency_ms   double precision NOT NULL,
    status       integer,
    outcome      text NOT NULL,
    error        text
);
CREATE INDEX webhook_delivery_attempts_delivery_idx ON webhook_delivery_attempts (delivery_id, id);

-- Dead letters are deliveries that ran out of attempts or age; a replay turns them back into
-- pending deliveries, so they are a view, not a copy that could drift.
CREATE VIEW webhook_dead_letters AS
    SELECT d.id, d.event_id, d.event_type, d.subject, d.endpoint_id, e.url AS endpoint_url,
           d.attempts, d.last_status, d.last_error, d.last_attempt_at, d.dead_at, d.replays, d.created_at
    FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
    WHERE d.state = 'dead';

-- The mock partner keeps its own tables in its own schema, as a real partner would keep them
-- in its own database: the receipt is its idempotency record, keyed by webhook-id.
CREATE SCHEMA partner;

CREATE TABLE partner.receipts (
    webhook_id   text PRIMARY KEY,
    event_type   text NOT NULL,
    subject      text NOT NULL,
    event_time   timestamptz,
    received_at  timestamptz NOT NULL DEFAULT now()
);

-- The work a receipt asked for, persisted in the receipt's transaction, so a partner restart
-- between the 2xx and the callback loses nothing: the callback loop picks it up again.
CREATE TABLE partner.callbacks (
    webhook_id   text PRIMARY KEY REFERENCES partner.receipts (webhook_id),
    order_id     text NOT NULL,
    action       text NOT NULL CHECK (action IN ('fulfill', 'cancel')),
    reason       text,
    due_at       timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    last_status  integer,
    last_error   text,
    done_at      timestamptz
);
CREATE INDEX partner_callbacks_due_idx ON partner.callbacks (due_at) WHERE state = 'pending';

-- Faults the partner injected on purpose, so drills and tests can tell an injected failure
-- from a real one.
CREATE TABLE partner.faults (
    id          bigserial PRIMARY KEY,
    webhook_id  text NOT NULL,
    kind        text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP SCHEMA partner CASCADE;
DROP VIEW webhook_dead_letters;
DROP TABLE webhook_delivery_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
