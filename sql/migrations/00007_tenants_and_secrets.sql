-- +goose Up

-- Each api_clients row is one API key. client_id is the client (tenant) the key acts for: it
-- owns the orders and idempotency keys the key creates, so several keys (a rotation, a second
-- service) can act for one client. role is what the key may do (docs/API.md); a revoked key
-- keeps its row for the audit trail and authenticates nothing.
ALTER TABLE api_clients
    ADD COLUMN client_id  text,
    ADD COLUMN role       text,
    ADD COLUMN revoked_at timestamptz;
UPDATE api_clients SET client_id = id, role = CASE WHEN is_admin THEN 'admin' ELSE 'client' END;

-- Keys seeded the old way, (id, name, key_sha256[, is_admin]), keep working: the key's id
-- names its client and is_admin picks the role. is_admin then follows role, so the two never
-- disagree.
-- +goose StatementBegin
CREATE FUNCTION api_clients_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.client_id := coalesce(NEW.client_id, NEW.id);
    NEW.role := coalesce(NEW.role, CASE WHEN NEW.is_admin THEN 'admin' ELSE 'client' END);
    NEW.is_admin := NEW.role = 'admin';
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER api_clients_fill BEFORE INSERT OR UPDATE ON api_clients
    FOR EACH ROW EXECUTE FUNCTION api_clients_fill();

ALTER TABLE api_clients
    ALTER COLUMN client_id SET NOT NULL,
    ALTER COLUMN role SET NOT NULL,
    ADD CONSTRAINT api_clients_role CHECK (role IN ('client', 'fulfiller', 'admin')),
    ADD CONSTRAINT api_clients_client_id CHECK (length(client_id) BETWEEN 1 AND 64);

-- The read model carries the order's owner, so a client's reads of it are one query with the
-- owner in the WHERE clause. The projector fills it from orders in the statement that writes
-- the row; rows of events whose order is not in orders (tests, foreign producers) keep NULL
-- and no client sees them.
ALTER TABLE order_summary ADD COLUMN client_id text;
UPDATE order_summary s SET client_id = o.client_id FROM orders o WHERE o.id = s.order_id;
-- A customer id means something only within its client: two clients' "cust-42" are two people.
DROP INDEX IF EXISTS order_summary_customer_idx;
CREATE INDEX order_summary_client_customer_idx
    ON order_summary (client_id, customer_id, created_at DESC, order_id DESC);

-- Webhook secrets are stored sealed (AES-256-GCM, internal/secretbox): "v1:<key id>:<data>".
-- Rows written before this migration hold the plain whsec_ form until the API, started with a
-- key ring, seals them; the deliverer reads both. The key id is a column of its own so an
-- operator can see which rows still depend on a key before removing it from the ring.
ALTER TABLE webhook_endpoints DROP CONSTRAINT webhook_endpoints_secret_check;
ALTER TABLE webhook_endpoints DROP CONSTRAINT webhook_endpoints_previous_secret_check;
ALTER TABLE webhook_endpoints
    ADD CONSTRAINT webhook_endpoints_secret_check CHECK (secret LIKE 'whsec\_%' OR secret LIKE 'v1:%'),
    ADD CONSTRAINT webhook_endpoints_previous_secret_check
        CHECK (previous_secret LIKE 'whsec\_%' OR previous_secret LIKE 'v1:%'),
    ADD COLUMN secret_key_id text GENERATED ALWAYS AS
        (CASE WHEN secret LIKE 'v1:%' THEN split_part(secret, ':', 2) END) STORED;

-- +goose Down
ALTER TABLE webhook_endpoints DROP COLUMN secret_key_id;
ALTER TABLE webhook_endpoints DROP CONSTRAINT webhook_endpoints_secret_check;
ALTER TABLE webhook_endpoints DROP CONSTRAINT webhook_endpoints_previous_secret_check;
ALTER TABLE webhook_endpoints
    ADD CONSTRAINT webhook_endpoints_secret_check CHECK (secret LIKE 'whsec\_%'),
    ADD CONSTRAINT webhook_endpoints_previous_secret_check CHECK (previous_secret LIKE 'whsec\_%');
DROP INDEX order_summary_client_customer_idx;
CREATE INDEX order_summary_customer_idx ON order_summary (customer_id, created_at DESC, order_id DESC);
ALTER TABLE order_summary DROP COLUMN client_id;
DROP TRIGGER api_clients_fill ON api_clients;
DROP FUNCTION api_clients_fill();
ALTER TABLE api_clients DROP COLUMN revoked_at, DROP COLUMN role, DROP COLUMN client_id;
