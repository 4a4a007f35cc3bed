#!/usr/bin/env bash
# Runs the ginws performance comparison and writes bench/results/.
#
#   bash bench/run.sh                         # full run, every library (~7 min on 2 cores)
#   BENCH_QUICK=1 bash bench/run.sh           # 1 s runs
#   BENCH_LIBS="ginws gorilla" bash bench/run.sh
#
# Other settings (see bench/README.md): BENCH_DURATION, BENCH_WARMUP,
# BENCH_SIZES, BENCH_CONNS, BENCH_IDLE_CONNS, BENCH_UPGRADE_PARALLEL,
# BENCH_UPGRADE_DURATION, BENCH_SERVER_CPUS, BENCH_LOAD_CPUS, BENCH_PIN=0,
# BENCH_GOMAXPROCS, BENCH_OUT.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

libs="${BENCH_LIBS:-ginws gorilla coder gws melody gobwas fastify}"
libs="${libs//,/ }"
has() { case " $libs " in *" $1 "*) return 0 ;; esac; return 1; }

command -v go >/dev/null 2>&1 || { echo "run.sh: go is not installed" >&2; exit 1; }

# The bench module is built on its own, whatever go.work may be around it.
export GOWORK=off
bin="$here/.bin"
mkdir -p "$bin"
tags=()
if ! has ginws; then
	# Leave ginws out of the server binary, so that a subset of peers can
	# be measured even while the library does not build.
	tags=(-tags noginws)
fi
echo "run.sh: building (go $(go env GOVERSION))" >&2
# -mod=mod: ginws's own requirements may have moved since go.sum was last
# tidied; let the build record what it needs instead of failing.
go build -mod=mod "${tags[@]}" -o "$bin/server" ./cmd/server
go build -mod=mod -o "$bin/load" ./cmd/load
go build -mod=mod -o "$bin/compare" ./cmd/compare

if has fastify; then
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
		echo "run.sh: fastify needs node and npm; install them or leave fastify out of BENCH_LIBS" >&2
		exit 1
	fi
	echo "run.sh: npm ci in bench/node (node $(node --version))" >&2
	(cd node && npm ci --no-audit --no-fund --loglevel=error)
fi

exec "$bin/compare" \
	-libs "$libs" \
	-server-bin "$bin/server" \
	-load-bin "$bin/load" \
	-node-dir "$here/node" \
	-out "${BENCH_OUT:-$here/results}"
