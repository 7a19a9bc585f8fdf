-- +goose Up

-- One order, one trace (issue 11, docs/TRACING.md): the W3C traceparent of the request that made
-- a change travels with its event. The outbox row keeps the API handler's span, which capture
-- sends as the record's ce_traceparent header; a delivery keeps the record's, so every attempt,
-- retries and replays included, continues the event's trace; a partner callback keeps the span
-- of the webhook request that scheduled it, so the API call it makes lands in the same trace.
-- Nullable: rows written before this migration, and writers that know of no trace, have none.
--
-- No grant is needed: every role that writes or reads these tables holds its privileges on the
-- whole table (00008, 00011), which covers a new column. roles_test.go checks that each service
-- role can write and read it.
ALTER TABLE outbox ADD COLUMN traceparent text;
ALTER TABLE webhook_deliveries ADD COLUMN traceparent text;
ALTER TABLE partner.callbacks ADD COLUMN traceparent text;

-- +goose Down
ALTER TABLE partner.callbacks DROP COLUMN traceparent;
ALTER TABLE webhook_deliveries DROP COLUMN traceparent;
ALTER TABLE outbox DROP COLUMN traceparent;
