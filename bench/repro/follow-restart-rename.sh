#!/usr/bin/env bash
# Reproduces a loss found by the fault suite (RELIABILITY.md, case F1):
# `mailtls follow` restarted while the mail log has just been rotated by
# rename, and syslog is still writing to the renamed file (it has not been
# told to reopen yet), loses the lines written to the renamed file after the
# restart. A follower that keeps running through the same rotation loses
# nothing. Usage: bench/repro/follow-restart-rename.sh [live|restart]
set -euo pipefail
B=${B:-$(cd "$(dirname "$0")/../.." && pwd)/bin/mailtls}
mode=${1:-restart}
root=$(cd "$(dirname "$0")/../.." && pwd)
G=${G:-$root/bin/mailtls-bench} # the log generator
[ -x "$G" ] || (cd "$root" && go build -o "$G" ./bench/cmd/mailtls-bench)
d=$(mktemp -d /tmp/mailtls-repro.XXXXXX)
cd "$d"
"$G" gen-log --lines 30000 --days 1 --seed 7 > src.log 2>/dev/null
head -n 3000 src.log > A           # in mail.log before the rotation
sed -n 3001,3300p src.log > Bp     # written to the renamed file during 1 s
sed -n 3301,6000p src.log > C      # written to the new file afterwards

cp A mail.log
"$B" follow --db f.db --log "$d/mail.log" 2> follow.log & pid=$!
sleep 1.5                          # caught up with A
if [ "$mode" = restart ]; then kill -9 $pid; wait $pid 2>/dev/null || true; fi
mv mail.log mail.log.1; : > mail.log                             # logrotate, create mode
( split -n l/10 --filter='cat >> mail.log.1; sleep 0.1' Bp ) & w=$!  # syslog: old file, 1 s more
sleep 0.3
if [ "$mode" = restart ]; then "$B" follow --db f.db --log "$d/mail.log" 2>> follow.log & pid=$!; fi
wait $w
cat C >> mail.log                  # syslog reopened: the new file
sleep 3
kill $pid; wait $pid 2>/dev/null || true

cat A Bp C > all.log
"$B" --db clean.db import -q all.log
got=$("$B" --db f.db deliveries | wc -l)
want=$("$B" --db clean.db deliveries | wc -l)
echo "$mode: follower recorded $got deliveries, a clean import of the same lines $want (work dir $d)"
grep -v '^$' follow.log | sed 's/^/  follow: /' | grep -E 'rotated|resuming|reading the rest|following' || true
[ "$got" = "$want" ]
