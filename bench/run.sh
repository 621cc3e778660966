#!/usr/bin/env bash
# make bench: installs the peers (Debian packages) if missing, waits for a
# quiet machine, then runs bench/cmd/benchrun, which rewrites BENCHMARKS.md.
# Knobs (environment): BENCH_RUNS, BENCH_DURATION, BENCH_CONNS, BENCH_LOG_LINES,
# BENCH_OVERRIDES, BENCH_GROWTH_ROWS, BENCH_PIN, BENCH_DIR, BENCH_SECTIONS,
# BENCH_LOOKUP_ONLY (http: only serve without and with the --http listener),
# BENCH_MAX_LOAD (default 1.5), BENCH_WAIT (seconds to wait for it, default 600).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

GO=${GO:-go}
BENCH_DIR=${BENCH_DIR:-/tmp/mailtls-bench}
export BENCH_DIR

# Peers are installed only for the sections that measure against them.
sections=" ${BENCH_SECTIONS:-lookup ingest growth} "
need_pkgs=()
if [[ $sections == *" lookup "* && ${BENCH_LOOKUP_ONLY:-} != http ]]; then
	command -v mta-sts-daemon >/dev/null || need_pkgs+=(postfix-mta-sts-resolver)
fi
if [[ $sections == *" ingest "* ]]; then
	command -v pflogsumm >/dev/null || need_pkgs+=(pflogsumm)
	command -v prometheus-postfix-exporter >/dev/null || need_pkgs+=(prometheus-postfix-exporter)
fi
command -v taskset >/dev/null || need_pkgs+=(util-linux)
if ((${#need_pkgs[@]})); then
	echo "bench: installing ${need_pkgs[*]}" >&2
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_pkgs[@]}" >&2
fi
# The Debian packages enable their services (mta-sts-daemon on 8461, the
# exporter on 9154); the bench starts its own instances on free ports.

[ -x bin/mailtls ] || $GO build -o bin/mailtls ./cmd/mailtls
mkdir -p "$BENCH_DIR/bin"
$GO build -o "$BENCH_DIR/bin/benchrun" ./bench/cmd/benchrun
$GO build -o "$BENCH_DIR/bin/filldb" ./bench/cmd/filldb
$GO build -o "$BENCH_DIR/bin/mailtls-bench" ./bench/cmd/mailtls-bench
export BENCH_TOOL="$BENCH_DIR/bin/mailtls-bench"
export BENCH_FILLDB="$BENCH_DIR/bin/filldb"
export BENCH_BIN="$PWD/bin/mailtls"

max=${BENCH_MAX_LOAD:-1.5}
wait_s=${BENCH_WAIT:-600}
waited=0
while :; do
	load=$(cut -d' ' -f1 /proc/loadavg)
	if awk -v l="$load" -v m="$max" 'BEGIN{exit !(l < m)}'; then break; fi
	if ((waited >= wait_s)); then
		echo "bench: load average $load is still >= $max after ${wait_s}s; running anyway (figures will be noisy)" >&2
		break
	fi
	echo "bench: load average $load >= $max; waiting" >&2
	sleep 30
	waited=$((waited + 30))
done

exec "$BENCH_DIR/bin/benchrun"
