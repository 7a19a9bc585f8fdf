-- +goose Up

-- Issue 13 (docs/BENCHMARKS.md): what the consumers' writes cost PostgreSQL per order.
--
-- webhook_deliveries_due_idx (next_attempt_at) WHERE pending duplicated the per-endpoint index
-- (endpoint_id, next_attempt_at) WHERE pending, which every claim walks: nothing read it but
-- the pending count of the gauges, which the per-endpoint index serves as well. Every insert
-- of a delivery and every write that leaves it pending (a retry) paid for an entry in both.
DROP INDEX webhook_deliveries_due_idx;

-- order_summary is written twice per order (order.created inserts, order.fulfilled or
-- .cancelled updates). The update changes no indexed column, so it can be a HOT update (no new
-- index entries, no index to vacuum) when the row's page has room for the new version; at the
-- default fillfactor of 100 about half did not. 85 leaves that room on new pages.
ALTER TABLE order_summary SET (fillfactor = 85);

-- +goose Down
ALTER TABLE order_summary RESET (fillfactor);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
