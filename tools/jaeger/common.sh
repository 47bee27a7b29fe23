# Sourced by start.sh and stop.sh: paths and helpers shared by both.
# Env: JAEGER_PID_FILE (default bin/jaeger.pid), JAEGER_LOG (default
# bin/jaeger.log), and the ports listed in run.sh.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
pid_file=${JAEGER_PID_FILE:-$root/bin/jaeger.pid}
log_file=${JAEGER_LOG:-$root/bin/jaeger.log}
query_url=http://127.0.0.1:${JAEGER_QUERY_PORT:-16686}

# jaeger_alive PID: PID is a live (not zombie) jaeger process. The name check
# keeps a recycled pid from being mistaken for Jaeger.
jaeger_alive() {
	local stat comm
	stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	comm=$(ps -o comm= -p "$1" 2>/dev/null) || return 1
	[[ $stat != Z* && $comm == *jaeger* ]]
}

# port_busy PORT: something already accepts TCP connections on 127.0.0.1:PORT.
port_busy() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
