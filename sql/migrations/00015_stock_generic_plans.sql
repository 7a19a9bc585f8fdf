-- +goose Up

-- Issue 13 (docs/BENCHMARKS.md, "CPU budget per order"): the two inventory statements of every
-- order were planned again on every call. Both joined inventory to unnest(skus, qtys) of
-- parameter arrays; a generic plan costs that unnest at the default 10 rows, so it came out
-- dearer than a custom plan that sees the real one to a few SKUs (cost 41 vs 8), PostgreSQL's
-- plan cache never settled on it, and every call paid the planner: measured with
-- pg_stat_statements.track_planning at 400 orders/s, 0.24 ms of planning per reserve and 0.22
-- per fulfill, a quarter of the API role's PostgreSQL time per order. Forcing the generic plan
-- is worse: on an inventory of a thousand SKUs its 10 rows make it a hash join over a
-- sequential scan of the whole table (measured: 1.2 ms per call instead of 0.28).
--
-- So both functions update one SKU per statement, by primary key: a plan that is the same for
-- every argument, which the plan cache reuses after its first five calls on a connection. The
-- loop runs in array order, and callers pass distinct SKUs sorted, the order in which every
-- statement on inventory locks its rows.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION reserve_stock(skus text[], qtys bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    short int := 0;
BEGIN
    FOR k IN 1 .. coalesce(cardinality(skus), 0) LOOP
        UPDATE inventory SET reserved = reserved + qtys[k], updated_at = now()
        WHERE sku = skus[k] AND stock - reserved >= qtys[k];
        IF NOT FOUND THEN
            short := short + 1;
        END IF;
    END LOOP;
    IF short > 0 THEN
        RAISE EXCEPTION 'insufficient stock for % of % SKUs', short, cardinality(skus)
            USING ERRCODE = 'OF409';
    END IF;
END
$$;
-- +goose StatementEnd

-- release_stock is the inventory half of fulfilling (sold: stock and reserved both fall) or
-- cancelling (reserved falls) a pending order, whose row the caller holds. SECURITY INVOKER,
-- EXECUTE PUBLIC, as reserve_stock (00013): it needs the caller's UPDATE on inventory.
-- +goose StatementBegin
CREATE FUNCTION release_stock(skus text[], qtys bigint[], sold boolean) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR k IN 1 .. coalesce(cardinality(skus), 0) LOOP
        IF sold THEN
            UPDATE inventory SET stock = stock - qtys[k], reserved = reserved - qtys[k], updated_at = now()
            WHERE sku = skus[k];
        ELSE
            UPDATE inventory SET reserved = reserved - qtys[k], updated_at = now()
            WHERE sku = skus[k];
        END IF;
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION release_stock(text[], bigint[], boolean);
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION reserve_stock(skus text[], qtys bigint[]) RETURNS void LANGUAGE plpgsql AS $$
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
