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

-- +goose Down
DROP TABLE partner.dead_letters;
DROP TABLE webhook_intake_dead_letters;
