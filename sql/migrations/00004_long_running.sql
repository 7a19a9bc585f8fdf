-- +goose Up
-- Issue 9: weeks of traffic. Poison records end as dead letters, repairs have an identity every
-- receiver dedupes, and every table has an index its retention purge and periodic queries use.

-- Records the deliverer's intake could not turn into deliveries: not a CloudEvent, or refused by
-- PostgreSQL for their values (SQLSTATE class 22/23, an index row too large). The record stays
-- on the topic; this row says where it is and why it was given up, and the offset moves on.
-- Text fields are made storable (valid UTF-8, no NUL, bounded) before they are written.
CREATE TABLE webhook_intake_dead_letters (
    topic           text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    event_id        text,
    subject         text,
    error           text NOT NULL,
    attempts        integer NOT NULL,
    dead_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);
CREATE INDEX webhook_intake_dead_letters_dead_idx ON webhook_intake_dead_letters (dead_at);

-- Webhooks the partner verified but could not store (their values refused), kept with the
-- reason instead of being answered 503 forever.
CREATE TABLE partner.dead_letters (
    webhook_id   text PRIMARY KEY,
    event_type   text,
    subject      text,
    reason       text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX partner_dead_letters_received_idx ON partner.dead_letters (received_at);

-- The identity of a repaired fact (docs/RECONCILE.md). A repair restates one fact: order
-- order_id reached version with an event of event_type; its event id is a UUIDv5 of the three
-- (orderflow.RepairEventID), the same from every run. One row per fact, written with the
-- repair's outbox row: a fact is published at most once, ever. A repair PostgreSQL refused
-- for its values is kept as 'refused' with the reason, so it is reported, never tried again;
-- reported_at is when a repair that did not clear its finding was first reported as such.
ALTER TABLE reconcile_repairs
    ADD COLUMN event_type  text,
    ADD COLUMN state       text NOT NULL DEFAULT 'published' CHECK (state IN ('published', 'refused')),
    ADD COLUMN reason      text,
    ADD COLUMN reported_at timestamptz;
CREATE INDEX reconcile_repairs_created_idx ON reconcile_repairs (created_at);

-- The fact a delivery carries: (subject, event_type, data.version). The original event of a
-- fact and its repair have different ids; this key makes the intake create at most one
-- delivery per fact and endpoint, so a partner never gets one fact under two webhook-ids.
-- NULL (no version in the data) is never deduplicated.
ALTER TABLE webhook_deliveries ADD COLUMN fact_version integer;
CREATE UNIQUE INDEX webhook_deliveries_fact_idx ON webhook_deliveries (endpoint_id, subject, event_type, fact_version)
    WHERE fact_version IS NOT NULL;

-- The mock partner acts once per fact too, whatever webhook-id carries it.
ALTER TABLE partner.receipts ADD COLUMN fact_version integer;
CREATE UNIQUE INDEX partner_receipts_fact_idx ON partner.receipts (subject, event_type, fact_version)
    WHERE fact_version IS NOT NULL;

-- Retention (docs/RETENTION.md): every rule's batched purge and its oldest-row gauge walk an
-- index on the rule's age column, so neither scans the table.
CREATE INDEX webhook_deliveries_succeeded_idx ON webhook_deliveries (succeeded_at) WHERE state = 'succeeded';
CREATE INDEX partner_receipts_received_idx ON partner.receipts (received_at);
CREATE INDEX partner_faults_at_idx ON partner.faults (at);
CREATE INDEX projector_dead_letters_dead_idx ON projector_dead_letters (dead_at);

-- Reconcile's incremental pass reads the orders changed since its last pass, not every order.
CREATE INDEX orders_updated_idx ON orders (updated_at, id);
-- ... and the orders still pending past the fulfillment SLA from the pending ones only.
CREATE INDEX orders_pending_created_idx ON orders (created_at) WHERE status = 'pending';

-- +goose Down
DROP INDEX orders_pending_created_idx;
DROP INDEX orders_updated_idx;
DROP INDEX projector_dead_letters_dead_idx;
DROP INDEX partner.partner_faults_at_idx;
DROP INDEX partner.partner_receipts_received_idx;
DROP INDEX webhook_deliveries_succeeded_idx;
DROP INDEX partner.partner_receipts_fact_idx;
ALTER TABLE partner.receipts DROP COLUMN fact_version;
DROP INDEX webhook_deliveries_fact_idx;
ALTER TABLE webhook_deliveries DROP COLUMN fact_version;
DROP INDEX reconcile_repairs_created_idx;
ALTER TABLE reconcile_repairs DROP COLUMN reported_at, DROP COLUMN reason, DROP COLUMN state, DROP COLUMN event_type;
DROP TABLE partner.dead_letters;
DROP TABLE webhook_intake_dead_letters;
