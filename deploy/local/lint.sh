#!/usr/bin/env bash
# The static checks, shared by make test and make lint: gofmt (failing with the list of
# unformatted files) and go vet; with --staticcheck, staticcheck too, installed at a pinned
# version into GOBIN (or GOPATH/bin) when it is not found.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
STATICCHECK_VERSION=v0.8.2 # staticcheck 2026.2.2, which knows Go 1.26

echo "== gofmt"
# Tracked and new (not ignored) files, so a file not yet committed is checked too.
mapfile -t unformatted < <(git ls-files -z --cached --others --exclude-standard -- '*.go' | xargs -0r gofmt -l)
if [ ${#unformatted[@]} -gt 0 ]; then
	echo "gofmt: these files are not formatted (run gofmt -w):" >&2
	printf '  %s\n' "${unformatted[@]}" >&2
	exit 1
fi
echo "== go vet"
go vet ./...

[ "${1:-}" = --staticcheck ] || exit 0
echo "== staticcheck"
bin=$(go env GOBIN)
bin=${bin:-$(go env GOPATH | cut -d: -f1)/bin}
if command -v staticcheck >/dev/null 2>&1; then
	staticcheck=$(command -v staticcheck)
elif [ -x "$bin/staticcheck" ]; then
	staticcheck=$bin/staticcheck
else
	echo "staticcheck: installing honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION into $bin"
	GOBIN=$bin go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
	staticcheck=$bin/staticcheck
fi
"$staticcheck" ./...
