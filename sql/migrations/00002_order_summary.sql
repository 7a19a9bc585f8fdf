-- +goose Up

-- order_summary is the projector's read model: one row per order, written only by the
-- projector from the events on orderflow.order. The row holds the order as of version
-- `version`; the projector replaces it only with a strictly newer version, so duplicate,
-- replayed and out-of-order events change nothing.
CREATE TABLE order_summary (
    order_id         uuid PRIMARY KEY,
    customer_id      text NOT NULL,
    status           text NOT NULL,
    total_cents      bigint NOT NULL,
    -- Units ordered: the sum of the items' quantities.
    item_count       integer NOT NULL,
    currency         char(3) NOT NULL,
    version          integer NOT NULL CHECK (version >= 1),
    cancel_reason    text,
    -- The order's own timestamps, as carried by the event.
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    -- The event that produced this row: its id, type and CloudEvents time (the outbox row's
    -- commit-time timestamp), and when the projector wrote it. projected_at - last_event_at is
    -- the row's apply lag, which the summary endpoint reports as freshness.
    last_event_id    uuid NOT NULL,
    last_event_type  text NOT NULL,
    last_event_at    timestamptz NOT NULL,
    projected_at     timestamptz NOT NULL
);
-- Keyset pagination of a customer's orders, newest first: (created_at, order_id) is unique
-- and never changes for an order, so pages are stable while orders change status.
CREATE INDEX order_summary_customer_idx ON order_summary (customer_id, created_at DESC, order_id DESC);

-- Events the projector could not apply and sent to orderflow.order.dlq, so operators and
-- reconcile can see them without reading the DLQ topic. Written in the same transaction as
-- the batch they belong to, before the batch's offsets are committed.
CREATE TABLE projector_dead_letters (
    topic           text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    event_id        text,
    order_id        text,
    error           text NOT NULL,
    attempts        integer NOT NULL,
    dead_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);

-- One row per repair reconcile --fix wrote to the outbox: at most one repair per order
-- version while it is in flight. A second --fix finds the row and writes nothing; a repair
-- older than the cooldown may be taken over (the first one was evidently lost).
CREATE TABLE reconcile_repairs (
    order_id    uuid NOT NULL,
    version     integer NOT NULL,
    kind        text NOT NULL,
    event_id    uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, version)
);

-- +goose Down
DROP TABLE reconcile_repairs;
DROP TABLE projector_dead_letters;
DROP TABLE order_summary;
