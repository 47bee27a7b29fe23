#!/usr/bin/env bash
# Starts bin/jaeger (see run.sh for the flags and ports) in the background,
# in its own session so a Ctrl-C in this terminal does not reach it; records
# its pid in bin/jaeger.pid and its output in bin/jaeger.log; waits, bounded,
# until the query API answers and the health check reports every component
# started (receivers start after the query extension); prints the URLs.
# Running it again while Jaeger is up only prints the URLs.
#
# Env: JAEGER_START_TIMEOUT seconds (default 60), plus those of common.sh
# and run.sh. Extra arguments go to jaeger (e.g. --set ...).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

timeout=${JAEGER_START_TIMEOUT:-60}
otlp_grpc=${JAEGER_OTLP_GRPC_PORT:-4317}
otlp_http=${JAEGER_OTLP_HTTP_PORT:-4318}
health_url=http://127.0.0.1:${JAEGER_HEALTH_PORT:-13133}/status

endpoints() {
	cat <<MSG
jaeger: query API and UI  $query_url  (e.g. $query_url/api/services)
jaeger: OTLP gRPC         127.0.0.1:$otlp_grpc
jaeger: OTLP HTTP         http://127.0.0.1:$otlp_http  (export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$otlp_http OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)
jaeger: storage is in memory (lost on stop); log $log_file; stop with make jaeger-stop
jaeger: note: this source build serves the full query API but only a placeholder UI page
jaeger:       (the UI assets are not in the Go module); where an image registry is at hand,
jaeger:       the jaegertracing/jaeger image gives the UI.
MSG
}

if [[ -f $pid_file ]]; then
	pid=$(<"$pid_file")
	if jaeger_alive "$pid"; then
		echo "jaeger: already running (pid $pid)"
		endpoints
		exit 0
	fi
	rm -f "$pid_file"
fi
# A foreign listener would answer the readiness checks below for us.
for port in "${JAEGER_QUERY_PORT:-16686}" "${JAEGER_HEALTH_PORT:-13133}" "$otlp_grpc" "$otlp_http"; do
	if port_busy "$port"; then
		echo "jaeger: 127.0.0.1:$port is already in use; stop what holds it or choose other ports (see tools/jaeger/run.sh)" >&2
		exit 1
	fi
done

mkdir -p "$(dirname "$pid_file")" "$(dirname "$log_file")"
# Without job control setsid does not fork, so $! is the pid run.sh execs
# into; run.sh also writes it to the pid file.
JAEGER_PID_FILE=$pid_file setsid "$here/run.sh" "$@" >"$log_file" 2>&1 </dev/null &
pid=$!

deadline=$((SECONDS + timeout + 1)) # SECONDS ticks whole seconds: wait at least timeout
# /status answers 503 until the collector has started every component.
until curl -fsS -o /dev/null --max-time 2 "$query_url/api/services" 2>/dev/null &&
	curl -fsS -o /dev/null --max-time 2 "$health_url" 2>/dev/null; do
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "jaeger: exited during start-up; the end of $log_file:" >&2
		tail -n 20 "$log_file" >&2
		rm -f "$pid_file"
		exit 1
	fi
	if ((SECONDS >= deadline)); then
		echo "jaeger: not ready within ${timeout}s; stopping it; see $log_file" >&2
		"$here/stop.sh" >&2 || true
		exit 1
	fi
	sleep 0.25
done
echo "jaeger: started (pid $pid)"
endpoints
