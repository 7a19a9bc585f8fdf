#!/usr/bin/env bash
# Fails when any log of the local stack (.local/log/*.log) holds an API key, a webhook secret or
# key ring material from .local/env and .local/webhook-keyring, whole or as its random part.
# make test runs it last, after the tests, 'make up', the demo and the drill have logged.
# It names the file and line number of a hit, never the secret.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL="$ROOT/.local"
[ -f "$LOCAL/env" ] || { echo "secrets-in-logs: no .local/env; run 'make up' first" >&2; exit 1; }
# shellcheck source=/dev/null
. "$LOCAL/env"
needles=$(mktemp)
trap 'rm -f "$needles"' EXIT
chmod 600 "$needles"
for v in "${API_KEY:-}" "${ADMIN_API_KEY:-}" "${PARTNER_API_KEY:-}" "${WEBHOOK_SECRET:-}"; do
	[ -n "$v" ] || continue
	printf '%s\n' "$v" "${v#of_}" "${v#whsec_}"
done | sort -u >"$needles"
if [ -f "${WEBHOOK_KEYRING_FILE:-}" ]; then
	grep -v '^#' "$WEBHOOK_KEYRING_FILE" | tr ', ' '\n\n' | sed -n 's/^\*\{0,1\}[A-Za-z0-9_-]*:\(.\+\)$/\1/p' >>"$needles"
fi
[ -s "$needles" ] || { echo "secrets-in-logs: .local/env holds no keys to look for" >&2; exit 1; }
hits=$(grep -rnFo -f "$needles" "$LOCAL/log" --include='*.log' | cut -d: -f1,2 | sort -u || true)
if [ -n "$hits" ]; then
	echo "secrets-in-logs: a key or secret appears in these log lines (file:line):" >&2
	printf '%s\n' "$hits" >&2
	exit 1
fi
echo "secrets-in-logs: $(wc -l <"$needles") keys and secrets, none in $(find "$LOCAL/log" -name '*.log' | wc -l) logs"
