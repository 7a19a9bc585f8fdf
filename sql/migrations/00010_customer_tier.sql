-- +goose Up

-- Schema evolution while the pipeline runs (docs/SCHEMAS.md, "A worked example"): orders get a
-- customer tier. Step 1 of 3, the only one that is a migration, and instant on a table of any
-- size: the column is added without a value for existing rows, so PostgreSQL rewrites nothing,
-- and new rows get 'standard' from the default. The lock it needs (ACCESS EXCLUSIVE, for
-- a catalog change only) is bounded by lock_timeout, so the migration fails fast instead of
-- queueing behind a long transaction with every order write queued behind it.
--
-- Step 2 is `orderflow migrate-data customer-tier`: it fills the existing rows in small batches
-- with progress, then step 3, in the same command, makes the column NOT NULL and checks the tier
-- without a long lock (a NOT VALID check validated under a lock that lets writes through).
--
-- PostgreSQL 11+ could have given the existing rows 'standard' here at once (a constant default
-- is stored in the catalog, not written to the rows); the batched backfill is the form every
-- change needs whose value is not a constant, and this example exists to show it.
--
-- Readers read coalesce(customer_tier, 'standard') until the backfill is done, so the API and
-- the events are right at every step. No grant is needed: the services' grants on orders are
-- table-wide, except the projector's, which reads only id and client_id.
SET LOCAL lock_timeout = '5s';
ALTER TABLE orders ADD COLUMN customer_tier text;
ALTER TABLE orders ALTER COLUMN customer_tier SET DEFAULT 'standard';
-- Enforced on every row written from now on; existing rows are checked by migrate-data.
ALTER TABLE orders ADD CONSTRAINT orders_customer_tier_known
    CHECK (customer_tier IN ('standard', 'gold', 'platinum')) NOT VALID;

-- +goose Down
ALTER TABLE orders DROP COLUMN customer_tier;
