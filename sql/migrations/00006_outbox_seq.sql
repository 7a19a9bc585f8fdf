-- +goose Up

-- The order in which outbox rows were inserted. Capture streams rows in commit order from the
-- WAL and never needs it; it reads it only when a replication slot was lost and it re-publishes
-- rows from the table (docs/CAPTURE.md, "A slot that was dropped or invalidated"): then nothing
-- else tells it in which order one key's rows were written. Writers that change one aggregate
-- hold its row lock while they insert its outbox row, so for one key this order is the commit
-- order.
--
-- Added without a default first and given one after, so existing rows keep NULL (they sort
-- first, by created_at) and the table is not rewritten.
CREATE SEQUENCE outbox_seq_seq;
ALTER TABLE outbox ADD COLUMN seq bigint;
ALTER TABLE outbox ALTER COLUMN seq SET DEFAULT nextval('outbox_seq_seq');
ALTER SEQUENCE outbox_seq_seq OWNED BY outbox.seq;

-- +goose Down
ALTER TABLE outbox DROP COLUMN seq;
