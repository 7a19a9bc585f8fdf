-- +goose Up

-- reserve_stock moves the wanted quantities of an order from available to reserved, or fails the
-- transaction it runs in. It lets the API write an order in one round trip (docs/API.md, "How
-- an order is written"): the claim of the idempotency key, this call and the inserts of the
-- order, its items and its outbox row are sent as one pipeline, which PostgreSQL runs as one
-- transaction; a plain UPDATE would skip a short SKU silently and the inserts after it would run.
--
-- The condition stock - reserved >= qty is evaluated on the latest row version under the row
-- lock, so concurrent orders for the last units cannot both win. skus must be distinct and
-- sorted (every statement that touches inventory locks its rows in SKU order). A short or
-- unknown SKU raises SQLSTATE OF409; the API then takes the step-by-step path, which finds
-- the short SKUs and stores the 409 under the key.
--
-- SECURITY INVOKER (the default): it needs the caller's UPDATE on inventory, which the API's
-- role has (00008); EXECUTE is PUBLIC, as for every new function.
-- +goose StatementBegin
CREATE FUNCTION reserve_stock(skus text[], qtys bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    UPDATE inventory i SET reserved = i.reserved + w.qty, updated_at = now()
    FROM unnest(skus, qtys) AS w(sku, qty)
    WHERE i.sku = w.sku AND i.stock - i.reserved >= w.qty;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n < cardinality(skus) THEN
        RAISE EXCEPTION 'insufficient stock for % of % SKUs', cardinality(skus) - n, cardinality(skus)
            USING ERRCODE = 'OF409';
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION reserve_stock(text[], bigint[]);
