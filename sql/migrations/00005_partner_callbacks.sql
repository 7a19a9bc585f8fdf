-- +goose Up
-- Issue 12, part 4: the partner does not give up for good. A callback is retried for a horizon
-- counted from when its cycle started (first due, or replayed by an operator); one that failed
-- for good waits in the replayable list (state 'failed', read through the partial index) until
-- it is replayed or retention drops it.
ALTER TABLE partner.callbacks
    ADD COLUMN cycle_started_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN replays          integer NOT NULL DEFAULT 0;
CREATE INDEX partner_callbacks_failed_idx ON partner.callbacks (done_at) WHERE state = 'failed';

-- +goose Down
DROP INDEX partner.partner_callbacks_failed_idx;
ALTER TABLE partner.callbacks DROP COLUMN replays, DROP COLUMN cycle_started_at;
