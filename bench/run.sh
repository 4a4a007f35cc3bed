#!/usr/bin/env bash
# Runs the ginws performance comparison and writes bench/results/.
#
#   bash bench/run.sh                         # full run, every library (~7 min on 2 cores)
#   BENCH_QUICK=1 bash bench/run.sh           # 1 s runs
#   BENCH_LIBS="ginws gorilla" bash bench/run.sh
#
#   BENCH_SCALE=100000 bash bench/run.sh      # scale mode: 100k idle connections, writes results/scale.md only
#   BENCH_GINWS_REF=HEAD bash bench/run.sh    # measure a commit of ginws, not the working tree
#
# Other settings (see bench/README.md): BENCH_DURATION, BENCH_WARMUP,
# BENCH_SIZES, BENCH_CONNS, BENCH_IDLE_CONNS, BENCH_UPGRADE_PARALLEL,
# BENCH_UPGRADE_DURATION, BENCH_ROUNDS, BENCH_PROFILE, BENCH_SERVER_CPUS,
# BENCH_LOAD_CPUS, BENCH_PIN=0, BENCH_GOMAXPROCS, BENCH_OUT,
# BENCH_SCALE_PER_SERVER, BENCH_SCALE_SRC_IPS.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if [ "${BENCH_SCALE:-0}" != "0" ]; then
	# The scale mode compares the Go servers it can check and close.
	libs="${BENCH_LIBS:-ginws ginws-events gorilla gws}"
else
	libs="${BENCH_LIBS:-ginws ginws-events gorilla coder gws melody gobwas fastify}"
fi
libs="${libs//,/ }"
has() { case " $libs " in *" $1 "*) return 0 ;; esac; return 1; }

command -v go >/dev/null 2>&1 || { echo "run.sh: go is not installed" >&2; exit 1; }

# The bench module is built on its own, whatever go.work may be around it.
export GOWORK=off
bin="$here/.bin"
mkdir -p "$bin"
tags=()
if ! has ginws && ! has ginws-events; then
	# Leave ginws (and ginws-events, the same library) out of the server
	# binary, so that a subset of peers can be measured even while the
	# library does not build.
	tags=(-tags noginws)
fi
# Which ginws: the working tree (../, the replace in go.mod), or with
# BENCH_GINWS_REF a commit of it, exported to .bin/ and put in the replace
# of a copy of go.mod, so that work in progress in the tree is not measured.
modflags=()
repo="$(cd "$here/.." && pwd)"
if [ -n "${BENCH_GINWS_REF:-}" ]; then
	rev="$(git -C "$repo" rev-parse --verify "${BENCH_GINWS_REF}^{commit}")"
	snap="$bin/ginws-$rev"
	if [ ! -d "$snap" ]; then
		rm -rf "$snap.tmp" && mkdir -p "$snap.tmp"
		git -C "$repo" archive "$rev" | tar -x -C "$snap.tmp"
		mv "$snap.tmp" "$snap"
	fi
	cp go.mod "$bin/go.mod"
	cp go.sum "$bin/go.sum"
	go mod edit -modfile="$bin/go.mod" -replace "github.com/ginws/ginws=$snap"
	modflags=(-modfile="$bin/go.mod")
	export BENCH_GINWS_DESC="commit ${rev:0:12} ($BENCH_GINWS_REF, exported to bench/.bin/)"
elif rev="$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null)"; then
	desc="working tree at commit $rev"
	if [ -n "$(git -C "$repo" status --porcelain -- go.mod go.sum ginws internal 2>/dev/null)" ]; then
		desc="$desc, with uncommitted changes to the library"
	fi
	export BENCH_GINWS_DESC="$desc"
fi
echo "run.sh: building (go $(go env GOVERSION)), ginws: ${BENCH_GINWS_DESC:-../}" >&2
# -mod=mod: ginws's own requirements may have moved since go.sum was last
# tidied; let the build record what it needs instead of failing.
go build -mod=mod "${modflags[@]}" "${tags[@]}" -o "$bin/server" ./cmd/server
go build -mod=mod "${modflags[@]}" -o "$bin/load" ./cmd/load
go build -mod=mod "${modflags[@]}" -o "$bin/compare" ./cmd/compare

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
	-memory-notes "$here/memory-notes.md" \
	-out "${BENCH_OUT:-$here/results}"
