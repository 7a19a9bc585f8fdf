# Shell functions the bench scripts share; source it from the repository root after
# '. .local/env', with PSQL set to a psql command (an array) on $DATABASE_URL.

# stock_bench_skus: SKU-1 .. SKU-1000 with stock to spare, the SKUs that
# 'orderflow bench api -skus 1000' orders from.
stock_bench_skus() {
	"${PSQL[@]}" -c "INSERT INTO inventory (sku, stock) SELECT 'SKU-' || g, 1000000000 FROM generate_series(1, 1000) g
		ON CONFLICT (sku) DO UPDATE SET stock = greatest(inventory.stock, 1000000000)"
}

# service_ticks: "name ticks" for every service of the stack and Kafka, ticks being the
# process's user + system CPU so far (/proc/PID/stat); a part that is not running is left out.
service_ticks() {
	local s pid
	for s in $(deploy/local/stack.sh services) kafka; do
		pid=$(head -n1 ".local/run/$s.pid" 2>/dev/null) || continue
		printf '%s %s\n' "$s" "$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)"
	done
}
