-- +goose Up

-- API clients authenticate with a bearer key; only its SHA-256 digest is stored.
CREATE TABLE api_clients (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    key_sha256  bytea NOT NULL UNIQUE,
    is_admin    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- stock is what is physically there; reserved is what open (pending) orders hold.
-- The CHECK is the last line of defence against overselling: even a buggy caller cannot
-- reserve more than there is or release more than was reserved.
CREATE TABLE inventory (
    sku         text PRIMARY KEY CHECK (length(sku) BETWEEN 1 AND 64),
    stock       bigint NOT NULL,
    reserved    bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT inventory_reserved_within_stock CHECK (reserved >= 0 AND reserved <= stock)
);

CREATE TABLE orders (
    id             uuid PRIMARY KEY,
    client_id      text NOT NULL,
    customer_id    text NOT NULL CHECK (length(customer_id) BETWEEN 1 AND 64),
    currency       char(3) NOT NULL,
    status         text NOT NULL CHECK (status IN ('pending', 'cancelled', 'fulfilled')),
    total_cents    bigint NOT NULL CHECK (total_cents >= 0),
    -- version grows by one with every change and travels in every event, so consumers can
    -- apply an event only when it is newer than what they hold.
    version        integer NOT NULL CHECK (version >= 1),
    cancel_reason  text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX orders_customer_created_idx ON orders (customer_id, created_at, id);

CREATE TABLE order_items (
    order_id          uuid NOT NULL REFERENCES orders (id),
    line              integer NOT NULL CHECK (line >= 1),
    sku               text NOT NULL,
    quantity          integer NOT NULL CHECK (quantity BETWEEN 1 AND 10000),
    unit_price_cents  bigint NOT NULL CHECK (unit_price_cents BETWEEN 0 AND 1000000000),
    PRIMARY KEY (order_id, line)
);

-- The primary key is what makes a key single-use per client: two concurrent requests with one
-- key cannot both insert, the second waits on the first's transaction and then replays it.
CREATE TABLE idempotency_keys (
    client_id        text NOT NULL,
    key              text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    -- SHA-256 of method, route and the canonical request body.
    fingerprint      bytea NOT NULL,
    state            text NOT NULL CHECK (state IN ('running', 'done')),
    response_status  integer,
    response_body    bytea,
    location         text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    PRIMARY KEY (client_id, key),
    CONSTRAINT idempotency_keys_done_has_response
        CHECK (state = 'running' OR (response_status IS NOT NULL AND response_body IS NOT NULL))
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

-- The outbox is written in the business transaction and read from the WAL by capture
-- (publication on this table only, inserts only). Rows are not read back by anyone, so they
-- can be deleted once committed; capture's retention task does that.
CREATE TABLE outbox (
    id              uuid PRIMARY KEY,
    aggregate_type  text NOT NULL,
    aggregate_id    text NOT NULL,
    event_type      text NOT NULL,
    schema_version  integer NOT NULL,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_created_idx ON outbox (created_at);

-- +goose Down
DROP TABLE outbox;
DROP TABLE idempotency_keys;
DROP TABLE order_items;
DROP TABLE orders;
DROP TABLE inventory;
DROP TABLE api_clients;
