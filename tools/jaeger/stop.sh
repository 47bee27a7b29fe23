#!/usr/bin/env bash
# Stops the Jaeger that start.sh started, by the pid in bin/jaeger.pid:
# SIGTERM, a bounded wait, then SIGKILL. Safe to run when it is not running.
#
# Env: JAEGER_STOP_TIMEOUT seconds before SIGKILL (default 15), plus those of
# common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

timeout=${JAEGER_STOP_TIMEOUT:-15}

if [[ ! -f $pid_file ]]; then
	echo "jaeger: not running (no $pid_file)"
	exit 0
fi
pid=$(<"$pid_file")
if ! jaeger_alive "$pid"; then
	echo "jaeger: not running (stale pid $pid); removed $pid_file"
	rm -f "$pid_file"
	exit 0
fi

kill -TERM "$pid" 2>/dev/null || true
deadline=$((SECONDS + timeout + 1)) # SECONDS ticks whole seconds: wait at least timeout
while jaeger_alive "$pid"; do
	if ((SECONDS >= deadline)); then
		echo "jaeger: pid $pid did not stop within ${timeout}s of SIGTERM; sending SIGKILL" >&2
		kill -KILL "$pid" 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			jaeger_alive "$pid" || break
			sleep 0.2
		done
		if jaeger_alive "$pid"; then
			echo "jaeger: pid $pid survived SIGKILL; $pid_file kept" >&2
			exit 1
		fi
		break
	fi
	sleep 0.2
done
rm -f "$pid_file"
echo "jaeger: stopped (pid $pid)"
