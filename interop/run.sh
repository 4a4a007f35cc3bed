#!/usr/bin/env bash
# Runs the interop tests (ws client) and the browser test (Chromium) against
# the ginws example server. Installs what is missing first:
#   - npm packages, with `npm ci`, when node_modules is absent or stale
#   - Debian's chromium, when /usr/bin/chromium is absent (needs root or sudo)
# Environment:
#   GINWS_ECHO_BIN      use this example server binary instead of building one
#   GINWS_ECHO_URL      test a server that is already running (no SIGTERM tests)
#   GINWS_TEST_DEFLATE  set to 0 to skip the permessage-deflate test
#   INTEROP_SKIP_BROWSER set to 1 to run only the ws interop tests
# Extra arguments are passed to `node --test` (e.g. --test-name-pattern=echo).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$here"

log() { printf 'interop: %s\n' "$*" >&2; }

command -v node >/dev/null || { log "node is not installed (Node >= 20 needed)"; exit 1; }
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  log "Node >= 20 needed, found $(node --version)"
  exit 1
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else log "need root to run: $*"; return 1
  fi
}

# npm packages: reinstall when the lockfile changed since the last `npm ci`.
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
stamp="node_modules/.ginws-lock-sha256"
if [ ! -d node_modules ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  log "npm ci"
  npm ci --no-audit --no-fund
  printf '%s\n' "$lock_sum" > "$stamp"
fi

# Chromium for the browser test, from Debian.
if [ "${INTEROP_SKIP_BROWSER:-}" != 1 ] && [ ! -x /usr/bin/chromium ] && [ -z "${GINWS_CHROMIUM:-}" ]; then
  log "installing chromium"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

# The example server.
if [ -z "${GINWS_ECHO_BIN:-}" ] && [ -z "${GINWS_ECHO_URL:-}" ]; then
  bindir="$(mktemp -d)"
  trap 'rm -rf "$bindir"' EXIT
  log "go build ./examples/echo"
  (cd "$root" && go build -o "$bindir/echo" ./examples/echo)
  export GINWS_ECHO_BIN="$bindir/echo"
fi

tests=(test/interop.test.mjs)
if [ "${INTEROP_SKIP_BROWSER:-}" != 1 ]; then
  tests+=(test/browser.test.mjs)
fi

mkdir -p out
log "node --test ${tests[*]}"
node --test --test-concurrency=1 "$@" "${tests[@]}"
