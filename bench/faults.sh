#!/usr/bin/env bash
# make faults: builds bench/cmd/faults and runs the fault suite against
# bin/mailtls; it rewrites RELIABILITY.md. Run as root so that the daemon can
# be run as nobody (chmod 000 must mean something) and a tmpfs can be
# mounted for the disk-full case; the fleet phase starts a PostgreSQL cluster
# of its own (the postgresql package, see .ci/deps). Takes about 5 minutes.
# Knobs: FAULTS_DIR (/tmp/mailtls-faults), FAULTS_PHASES
# (daemon,abuse,follower,restart,fleet,netcut), FAULTS_USER (nobody), FAULTS_SCALE (1),
# FAULTS_OUT (RELIABILITY.md), FAULTS_CHECK (set: exit 1 when a correctness
# check fails; CI uses it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
GO=${GO:-go}
dir=${FAULTS_DIR:-/tmp/mailtls-faults}

[ -x bin/mailtls ] || $GO build -o bin/mailtls ./cmd/mailtls
command -v setpriv >/dev/null || { echo "faults: setpriv (util-linux) is required" >&2; exit 1; }
mkdir -p "$dir.bin"
$GO build -o "$dir.bin/faults" ./bench/cmd/faults
$GO build -o "$dir.bin/mailtls-bench" ./bench/cmd/mailtls-bench
# The daemon runs as nobody: it must be able to reach the binary.
install -m 0755 bin/mailtls "$dir.bin/mailtls"
chmod 0755 "$dir.bin"

exec "$dir.bin/faults" -bin "$dir.bin/mailtls" -tool "$dir.bin/mailtls-bench" -dir "$dir" -out "${FAULTS_OUT:-RELIABILITY.md}" \
	-phases "${FAULTS_PHASES:-daemon,abuse,follower,restart,fleet,netcut}" \
	-user "${FAULTS_USER-nobody}" -scale "${FAULTS_SCALE:-1}" ${FAULTS_CHECK:+-check}
