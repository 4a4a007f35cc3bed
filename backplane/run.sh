#!/usr/bin/env bash
# Backplane tests: installs what they need (Debian's redis-server when it is
# missing; NATS runs embedded from its Go module) and runs go vet,
# staticcheck and go test -race in each backplane module (redis, nats, e2e)
# plus the ginws Cluster tests. Called by `make test`.
#
#   bash backplane/run.sh          # tests
#   bash backplane/run.sh bench    # BenchmarkBackplane (3 instances x 1k connections)
set -euo pipefail
cd "$(dirname "$0")"

GO=${GO:-go}
STATICCHECK_VERSION=${STATICCHECK_VERSION:-v0.8.2}
GOBIN=${GOBIN:-$($GO env GOPATH)/bin}

if ! command -v redis-server >/dev/null 2>&1; then
	echo "backplane: installing redis-server (Debian)"
	SUDO=
	if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
# The tests start their own redis-server on a free loopback port (no
# persistence); skipping for want of one is a failure here.
export GINWS_REQUIRE_BROKERS=1

if [ "${1:-}" = bench ]; then
	cd e2e
	exec $GO test -run '^$' -bench Backplane -benchtime "${BENCHTIME:-2s}" -timeout 20m .
fi

if [ ! -x "$GOBIN/staticcheck" ]; then
	$GO install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
for m in redis nats e2e; do
	echo "== backplane/$m"
	(
		cd "$m"
		out=$(gofmt -l .)
		if [ -n "$out" ]; then echo "gofmt would change: $out"; exit 1; fi
		$GO vet ./...
		"$GOBIN/staticcheck" ./...
		$GO test -race -count=1 -timeout 20m ./...
	)
done
echo "== ginws Cluster"
(cd .. && $GO test -race -count=1 -run 'Cluster' ./ginws)
