#!/usr/bin/env python3
"""A small stream manager that behaves like the upstream `inference` one,
defects included, for black-box tests of Corral's harness.

It is written from the facts in Corral's PROTOCOL.md and issue 8, not from
upstream's source: the same wire protocol and answers, and the same
observable faults, each of which can be switched off.

Behaviour (what the harness must cope with):
- Wire: one request per TCP connection; a frame is a 4-byte big-endian
  length then UTF-8 JSON; header and body go out in one write; every answer
  is {"request_id", "response", "pipeline_id"}.
- Serial server: one connection at a time (each accepted socket gets the
  socket timeout; a request that does not arrive within it is answered
  invalid_payload), then a health pass every --health-interval seconds
  between connections. No cap on the size a header announces.
- Workers are `multiprocessing` children (fork) in the manager's process
  group; nothing in their command line or environment names their pipeline.
  Each plays a synthetic source (frames at max_fps, default 10) into a
  results buffer that keeps the newest results_buffer_size entries, so
  status, consume_result, mute and resume answer with upstream's states and
  report shape.
- The init payload is checked by hand against upstream's model: required
  video_configuration / processing_configuration / sink_configuration with
  the `type` literals VideoConfiguration / WorkflowConfiguration /
  MemorySinkConfiguration. The worker checks it, after it was spawned; a
  failure answers invalid_payload.
- `inspect`, `chaos` and every other unknown type answer invalid_payload;
  `mute` is refused unless RUNNING and `resume` unless PAUSED or MUTED
  (operation_error).

Defects, each fixed by one name in --fix (comma-separated, or "all"; the
environment variable UPSTREAM_LIKE_FIX is read when the flag is absent):
- phantom: a failed init keeps the spawned worker in the table, so its id
  stays in list_pipelines. Fixed: the worker is stopped and forgotten.
- timeout: the wait for a worker's answer has no timeout, and the health
  pass probes every worker that way, so a stopped or crashed worker freezes
  every client. Fixed: every wait is bounded by --queue-timeout (answers of
  an earlier request are dropped by request id, a timeout answers
  operation_error, and commands to a worker that missed an answer fail fast
  until a probe succeeds), dead workers are reaped, and the health pass
  kills a worker that failed --max-health-failures probes in a row, so
  both leave the list.
- sigterm: the SIGTERM handler raises TypeError when any pipeline exists;
  the manager dies with a traceback (exit 1) and its workers keep running.
  Fixed: SIGTERM stops every worker (SIGTERM, --grace seconds, SIGKILL),
  reaps them and exits 0.

Output: the line "upstream_like: listening on HOST:PORT (pid N)" on stdout
once the socket listens; a log on stderr. --pid-log FILE gets one JSON line
per worker event: {"event": "spawn"|"init_failed"|"exit", "pipeline_id",
"pid", "time", ...}, so a test can tell which pid served which pipeline.

Standard library only; Python 3.8 or later on Linux.
"""

import argparse
import json
import multiprocessing
import os
import queue
import select
import signal
import socket
import struct
import sys
import time
import traceback
import uuid

from upstream_like_worker import check_init_payload, worker_main

DEFECTS = ("phantom", "timeout", "sigterm")
HEADER = struct.Struct(">I")
NOT_FOUND = "Could not find InferencePipeline with id={}."
NEEDS_PIPELINE = {"mute", "resume", "status", "consume_result", "terminate"}


def log(msg):
    print("upstream_like: " + msg, file=sys.stderr, flush=True)


def failure(error_type, message, error_class="ProcessesManagerError", public=None):
    return {
        "status": "failure",
        "error_type": error_type,
        "error_class": error_class,
        "error_message": message,
        "public_error_message": public or message,
    }


class WorkerTimeout(Exception):
    """A bounded wait for a worker's answer ran out (fixed mode only)."""


class Shutdown(BaseException):
    """Raised by the fixed SIGTERM handler to leave the serve loop (a
    BaseException, so no handler on the way catches it)."""


class Worker:
    """One pipeline's process and its two queues. Commands carry a request
    id; the worker echoes it, so a late answer is recognised as stale."""

    def __init__(self, ctx, pipeline_id):
        self.pipeline_id = pipeline_id
        self.commands = ctx.Queue()
        self.answers = ctx.Queue()
        self.process = ctx.Process(target=worker_main, args=(self.commands, self.answers), daemon=False)
        self.failures = 0

    def start(self):
        self.process.start()
        return self.process.pid

    def ask(self, command, timeout):
        """Sends one command and waits for its answer; timeout None waits
        for ever (the upstream defect)."""
        request_id = uuid.uuid4().hex
        command = dict(command, request_id=request_id)
        self.commands.put(command)
        if timeout is None:
            return self.answers.get()["response"]
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerTimeout()
            try:
                answer = self.answers.get(timeout=left)
            except queue.Empty:
                raise WorkerTimeout() from None
            if answer.get("request_id") == request_id:
                return answer["response"]
            log("pipeline %s: dropped a stale answer to request %s" % (self.pipeline_id, answer.get("request_id")))

    def stop(self, grace):
        """SIGTERM, wait up to grace, SIGKILL, reap. Returns the exit code."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(grace)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        return self.process.exitcode


class Manager:
    def __init__(self, args, fixes):
        self.args = args
        self.fixes = fixes
        self.ctx = multiprocessing.get_context("fork")
        self.table = {}  # pipeline_id -> Worker
        self.pid_log = open(args.pid_log, "a", buffering=1) if args.pid_log else None

    def note(self, event, worker, **extra):
        if self.pid_log is None:
            return
        line = dict(event=event, pipeline_id=worker.pipeline_id, pid=worker.process.pid, time=time.time(), **extra)
        self.pid_log.write(json.dumps(line) + "\n")

    def wait_bound(self):
        return self.args.queue_timeout if "timeout" in self.fixes else None

    # ---- requests -------------------------------------------------------

    def handle(self, request):
        """Returns (response body, envelope pipeline_id)."""
        kind = request.get("type")
        if not isinstance(kind, str):
            return failure("invalid_payload", "request has no string 'type'", "ValidationError"), None
        pipeline_id = request.get("pipeline_id")
        if kind in NEEDS_PIPELINE and not isinstance(pipeline_id, str):
            return failure("invalid_payload", "%s needs a string 'pipeline_id'" % kind, "ValidationError"), None
        if kind == "list_pipelines":
            return {"status": "success", "pipelines": list(self.table)}, None
        if kind == "init":
            return self.init(request)
        if kind == "webrtc":
            return failure("operation_error", "webrtc is not supported by this manager"), None
        if kind not in NEEDS_PIPELINE:
            return failure("invalid_payload", "unknown command type %r" % kind, "ValidationError",
                           "Unknown command type."), None
        worker = self.table.get(pipeline_id)
        if worker is None:
            if kind == "terminate":  # upstream answers invalid_payload here
                return failure("invalid_payload", NOT_FOUND.format(pipeline_id), "KeyError"), pipeline_id
            return failure("not_found", NOT_FOUND.format(pipeline_id), "NotFoundError"), pipeline_id
        if kind == "terminate":
            return self.terminate(worker), pipeline_id
        if "timeout" in self.fixes:
            if self.reap_if_dead(worker, "request"):
                return failure("operation_error", "pipeline %s: its worker %d died (exit %s)"
                               % (pipeline_id, worker.process.pid, worker.process.exitcode)), pipeline_id
            if worker.failures:
                # Fail fast while the health pass decides: a serial server
                # must not spend a timeout per command on a stuck worker.
                return failure("operation_error", "pipeline %s is not responding (%d failed answers)"
                               % (pipeline_id, worker.failures), "TimeoutError"), pipeline_id
        command = {"type": kind}
        if kind == "consume_result":
            command["excluded_fields"] = request.get("excluded_fields") or []
        try:
            return worker.ask(command, self.wait_bound()), pipeline_id
        except WorkerTimeout:
            worker.failures += 1
            return failure("operation_error", "pipeline %s did not answer %s within %.1fs"
                           % (pipeline_id, kind, self.args.queue_timeout), "TimeoutError"), pipeline_id

    def reap_if_dead(self, worker, found_by):
        """Fixed mode: a worker that exited is joined and leaves the table."""
        if worker.process.is_alive():
            return False
        worker.process.join(1)
        self.table.pop(worker.pipeline_id, None)
        self.note("exit", worker, exitcode=worker.process.exitcode, found_by=found_by)
        log("pipeline %s: worker %d died (exit %s), removed" % (worker.pipeline_id, worker.process.pid,
                                                               worker.process.exitcode))
        return True

    def init(self, request):
        pipeline_id = str(uuid.uuid4())
        worker = Worker(self.ctx, pipeline_id)
        worker.start()
        self.table[pipeline_id] = worker
        self.note("spawn", worker)
        payload = {k: v for k, v in request.items() if k not in ("type", "request_id")}
        try:
            answer = worker.ask({"type": "init", "payload": payload}, self.wait_bound())
        except WorkerTimeout:
            answer = failure("operation_error", "worker did not answer init within %.1fs" % self.args.queue_timeout,
                             "TimeoutError")
        if answer.get("status") != "success":
            self.note("init_failed", worker, error_type=answer.get("error_type"))
            if "phantom" in self.fixes:
                del self.table[pipeline_id]
                self.note("exit", worker, exitcode=worker.stop(self.args.grace))
        return answer, pipeline_id

    def terminate(self, worker):
        if "timeout" in self.fixes:
            answer = {"status": "success"}
            if worker.process.is_alive() and not worker.failures:
                try:
                    answer = worker.ask({"type": "terminate"}, self.wait_bound())
                except WorkerTimeout:
                    pass  # stopped below either way
            exitcode = worker.stop(self.args.grace)
        else:
            answer = worker.ask({"type": "terminate"}, None)
            worker.process.join()
            exitcode = worker.process.exitcode
        self.table.pop(worker.pipeline_id, None)
        self.note("exit", worker, exitcode=exitcode)
        return answer

    # ---- health ---------------------------------------------------------

    def health_pass(self):
        """Probes every worker with status. Unfixed, the probe waits for
        ever (a crashed or stopped worker freezes the server); fixed, dead
        workers are reaped and a worker that failed max_health_failures
        probes in a row is killed; both leave the table."""
        for pipeline_id, worker in list(self.table.items()):
            if "timeout" in self.fixes and self.reap_if_dead(worker, "health"):
                continue
            try:
                worker.ask({"type": "status"}, self.wait_bound())
                worker.failures = 0
            except WorkerTimeout:
                worker.failures += 1
                log("pipeline %s: health probe %d failed" % (pipeline_id, worker.failures))
                if worker.failures >= self.args.max_health_failures:
                    del self.table[pipeline_id]
                    self.note("exit", worker, exitcode=worker.stop(0), found_by="health")
                    log("pipeline %s: killed after %d failed probes" % (pipeline_id, worker.failures))

    # ---- shutdown -------------------------------------------------------

    def on_sigterm(self, signum, frame):
        if "sigterm" in self.fixes:
            raise Shutdown()
        if not self.table:
            sys.exit(0)
        # The defect: the handler calls the stop routine with the wrong
        # arguments, which raises TypeError before any worker is touched.
        for pipeline_id in list(self.table):
            self.stop_pipeline(pipeline_id)

    def stop_pipeline(self, pipeline_id, worker):  # noqa: called wrongly above on purpose
        worker.stop(self.args.grace)

    def shutdown(self):
        """Fixed SIGTERM: every worker at once, bounded."""
        workers = list(self.table.values())
        for w in workers:
            if w.process.is_alive():
                w.process.terminate()
        deadline = time.monotonic() + self.args.grace
        for w in workers:
            w.process.join(max(0, deadline - time.monotonic()))
        for w in workers:
            self.note("exit", w, exitcode=w.stop(0), found_by="shutdown")
        self.table.clear()


def read_exact(conn, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(min(n - len(buf), 1 << 16))  # never allocate what a header merely announces
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def send_frame(conn, request_id, response, pipeline_id):
    data = json.dumps({"request_id": request_id, "response": response, "pipeline_id": pipeline_id}).encode("utf-8")
    try:
        conn.sendall(HEADER.pack(len(data)) + data)  # header and body in one write
    except OSError as e:
        log("could not answer: %s" % e)


def serve_connection(manager, conn):
    """Reads one frame, answers one frame. There is no cap on the announced
    size (as upstream): a request that does not arrive within the socket
    timeout is answered invalid_payload; a client that closed gets nothing."""
    request_id = uuid.uuid4().hex
    try:
        (size,) = HEADER.unpack(read_exact(conn, HEADER.size))
        body = read_exact(conn, size)
    except socket.timeout:
        log("request not received within %.1fs" % manager.args.socket_timeout)
        send_frame(conn, request_id, failure("invalid_payload", "request not received within %.1fs"
                                             % manager.args.socket_timeout, "TimeoutError"), None)
        return
    except (OSError, ConnectionError) as e:
        log("connection dropped while reading: %s" % e)
        return
    try:
        request = json.loads(body.decode("utf-8"))
        if not isinstance(request, dict):
            raise ValueError("request is not a JSON object")
    except (UnicodeDecodeError, ValueError) as e:
        response, pipeline_id = failure("invalid_payload", "malformed request: %s" % e, "MalformedPayloadError"), None
    else:
        response, pipeline_id = manager.handle(request)
    send_frame(conn, request_id, response, pipeline_id)


def serve(manager, sock):
    next_health = time.monotonic() + manager.args.health_interval
    while True:
        wait = max(0.0, next_health - time.monotonic())
        readable, _, _ = select.select([sock], [], [], wait)
        if readable:
            conn, _ = sock.accept()
            conn.settimeout(manager.args.socket_timeout)
            with conn:
                serve_connection(manager, conn)
        if time.monotonic() >= next_health:
            manager.health_pass()
            next_health = time.monotonic() + manager.args.health_interval


def parse_fixes(text):
    names = {n.strip() for n in text.split(",") if n.strip()}
    if "all" in names:
        return set(DEFECTS)
    unknown = names - set(DEFECTS)
    if unknown:
        raise argparse.ArgumentTypeError("unknown defect(s) %s: want a comma-separated subset of %s, or all"
                                         % (", ".join(sorted(unknown)), ",".join(DEFECTS)))
    return names


def main(argv):
    p = argparse.ArgumentParser(description="An upstream-like stream manager for Corral's black-box tests.")
    p.add_argument("--host", default=os.environ.get("STREAM_MANAGER_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("STREAM_MANAGER_PORT", "7070")),
                   help="0 picks a free port")
    p.add_argument("--fix", type=parse_fixes, default=None,
                   help="defects to fix: phantom,timeout,sigterm or all (default $UPSTREAM_LIKE_FIX, else none)")
    p.add_argument("--pid-log", default="", help="file to append one JSON line per worker event to")
    p.add_argument("--socket-timeout", type=float, default=5.0, help="seconds per accepted socket")
    p.add_argument("--health-interval", type=float, default=1.0, help="seconds between health passes")
    p.add_argument("--queue-timeout", type=float, default=2.0, help="fixed mode: bound on a worker's answer")
    p.add_argument("--max-health-failures", type=int, default=3, help="fixed mode: failed probes before a kill")
    p.add_argument("--grace", type=float, default=2.0, help="seconds a stopped worker gets before SIGKILL")
    args = p.parse_args(argv)
    if args.fix is None:
        try:
            args.fix = parse_fixes(os.environ.get("UPSTREAM_LIKE_FIX", ""))
        except argparse.ArgumentTypeError as e:
            p.error("UPSTREAM_LIKE_FIX: %s" % e)
    for name in ("socket_timeout", "health_interval", "queue_timeout", "grace"):
        if getattr(args, name) <= 0:
            p.error("--%s must be > 0" % name.replace("_", "-"))

    manager = Manager(args, args.fix)
    signal.signal(signal.SIGTERM, manager.on_sigterm)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(64)
    host, port = sock.getsockname()[:2]
    log("fixes: %s" % (",".join(sorted(args.fix)) or "none"))
    print("upstream_like: listening on %s:%d (pid %d)" % (host, port, os.getpid()), flush=True)
    try:
        serve(manager, sock)
    except Shutdown:
        log("SIGTERM: stopping %d pipeline(s)" % len(manager.table))
        manager.shutdown()
        return 0
    except SystemExit as e:
        return e.code or 0
    except BaseException:
        # Dies like a crashed interpreter: no atexit handlers, so
        # multiprocessing does not join the workers, which keep running.
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
