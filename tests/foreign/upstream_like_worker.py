"""The worker side of upstream_like.py: the init model checked by hand and a
synthetic pipeline with upstream's states, report shape and results buffer.

A worker is forked by the manager and talks to it over two
multiprocessing queues: it gets {"type", "request_id", ...} commands and
puts {"request_id", "response"} answers. consumption_timeout is accepted
and ignored (the fixture's pipelines never end by themselves).
"""

import collections
import math
import signal
import time
from datetime import datetime

FILLING = ("DROP_OLDEST", "WAIT", "ADAPTIVE_DROP_OLDEST", "DROP_LATEST", "ADAPTIVE_DROP_LATEST")
CONSUMPTION = ("EAGER", "LAZY")
DEFAULT_FPS = 10.0


def now_iso():
    return datetime.now().isoformat(timespec="microseconds")


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    return (is_int(v) or isinstance(v, float)) and not (isinstance(v, float) and math.isnan(v))


def check_init_payload(p):
    """Returns the list of problems of an init payload against upstream's
    model (required sections, `type` literals, field types); empty when
    it is valid."""
    errors = []

    def section(name, literal):
        v = p.get(name)
        if not isinstance(v, dict):
            errors.append("%s: field required (an object)" % name)
            return None
        if v.get("type") != literal:
            errors.append("%s.type: input should be %r, got %r" % (name, literal, v.get("type")))
        return v

    def optional(sec, name, key, ok, want):
        if sec is not None and sec.get(key) is not None and not ok(sec[key]):
            errors.append("%s.%s: input should be %s, got %r" % (name, key, want, sec[key]))

    vc = section("video_configuration", "VideoConfiguration")
    if vc is not None:
        ref = vc.get("video_reference")
        refs = ref if isinstance(ref, list) else [ref]
        if ref is None or not refs or not all(isinstance(r, str) or is_int(r) for r in refs):
            errors.append("video_configuration.video_reference: field required (a string, an int or a list of them)")
        optional(vc, "video_configuration", "max_fps", lambda v: is_number(v) and v > 0, "a positive number")
        optional(vc, "video_configuration", "source_buffer_filling_strategy", lambda v: v in FILLING,
                 "one of " + ", ".join(FILLING))
        optional(vc, "video_configuration", "source_buffer_consumption_strategy", lambda v: v in CONSUMPTION,
                 "one of " + ", ".join(CONSUMPTION))
    pc = section("processing_configuration", "WorkflowConfiguration")
    if pc is not None:
        spec = pc.get("workflow_specification")
        named = isinstance(pc.get("workspace_name"), str) and isinstance(pc.get("workflow_id"), str)
        if not isinstance(spec, dict) and not named:
            errors.append("processing_configuration: workflow_specification (an object) or workspace_name and "
                          "workflow_id required")
        optional(pc, "processing_configuration", "image_input_name", lambda v: isinstance(v, str), "a string")
        optional(pc, "processing_configuration", "workflows_parameters", lambda v: isinstance(v, dict), "an object")
    sc = section("sink_configuration", "MemorySinkConfiguration")
    optional(sc, "sink_configuration", "results_buffer_size", lambda v: is_int(v) and v > 0, "a positive integer")
    top = {"consumption_timeout": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
           "api_key": (lambda v: isinstance(v, str), "a string"),
           "predictions_queue_size": (lambda v: is_int(v) and v > 0, "a positive integer"),
           "decoding_buffer_size": (lambda v: is_int(v) and v > 0, "a positive integer")}
    for key, (ok, want) in top.items():
        optional(p, "init", key, ok, want)
    return errors


def event(event_type, severity=20, **payload):
    return {"timestamp": now_iso(), "severity": severity, "event_type": event_type, "payload": payload,
            "context": "inference_pipeline"}


def not_allowed(message):
    return {"status": "failure", "error_type": "operation_error", "error_class": "StreamOperationNotAllowedError",
            "error_message": message, "public_error_message": message}


class Pipeline:
    """Synthetic sources at fps frames a second; results are made lazily
    when a command arrives (the worker sleeps in between), keeping only
    the newest results_buffer_size of them, as the memory sink does."""

    def __init__(self, payload):
        vc, sc = payload["video_configuration"], payload["sink_configuration"]
        ref = vc["video_reference"]
        self.refs = ref if isinstance(ref, list) else [ref]
        self.fps = float(vc.get("max_fps") or DEFAULT_FPS)
        self.filling = vc.get("source_buffer_filling_strategy") or "DROP_OLDEST"
        self.consumption = vc.get("source_buffer_consumption_strategy") or "EAGER"
        self.buffer = collections.deque(maxlen=sc.get("results_buffer_size") or 64)
        self.state = "RUNNING"
        self.frame_id = 0
        self.clock = time.monotonic()
        self.events = [event("INFERENCE_THREAD_STARTED")]
        self.events += [event("SOURCE_CONNECTION_ESTABLISHED", source_id=i) for i in range(len(self.refs))]

    def advance(self):
        now = time.monotonic()
        frames = int((now - self.clock) * self.fps)
        if frames <= 0:
            return
        self.clock += frames / self.fps
        first = self.frame_id + 1
        self.frame_id += frames
        if self.state != "RUNNING":  # muted: frames are decoded, results dropped
            return
        for fid in range(max(first, self.frame_id - self.buffer.maxlen + 1), self.frame_id + 1):
            stamp = now_iso()
            self.buffer.append({
                "outputs": [{"source_id": i, "frame_id": fid, "brightness": float((fid * 37 + i) % 256),
                             "motion": float((fid * 11) % 7) / 7.0} for i in range(len(self.refs))],
                "frames_metadata": [{"frame_timestamp": stamp, "frame_id": fid, "source_id": i}
                                    for i in range(len(self.refs))],
            })

    def report(self):
        sources = [{
            "source_properties": {"width": 640, "height": 480, "total_frames": -1, "is_file": False,
                                  "fps": self.fps},
            "source_reference": str(ref), "buffer_size": self.buffer.maxlen, "state": self.state,
            "buffer_filling_strategy": self.filling, "buffer_consumption_strategy": self.consumption,
            "source_id": i,
        } for i, ref in enumerate(self.refs)]
        latency = [{"source_id": i, "frame_decoding_latency": 0.001, "inference_latency": 0.002,
                    "e2e_latency": 0.004} for i in range(len(self.refs))]
        throughput = self.fps if self.state == "RUNNING" else 0.0
        return {"video_source_status_updates": self.events[-10:], "latency_reports": latency,
                "inference_throughput": throughput, "sources_metadata": sources}

    def command(self, kind, cmd):
        self.advance()
        if kind == "status":
            return {"status": "success", "report": self.report()}
        if kind == "mute":
            if self.state != "RUNNING":
                return not_allowed("Cannot mute a stream in state %s." % self.state)
            self.state = "MUTED"
            self.events.append(event("SOURCE_MUTED"))
            return {"status": "success"}
        if kind == "resume":
            if self.state not in ("PAUSED", "MUTED"):
                return not_allowed("Cannot resume a stream in state %s." % self.state)
            self.state = "RUNNING"
            self.events.append(event("SOURCE_RESUMED"))
            return {"status": "success"}
        if kind == "consume_result":
            if not self.buffer:
                return {"status": "success", "outputs": [], "frames_metadata": []}
            entry = self.buffer.popleft()
            excluded = set(cmd.get("excluded_fields") or [])
            outputs = [{k: v for k, v in o.items() if k not in excluded} for o in entry["outputs"]]
            return {"status": "success", "outputs": outputs, "frames_metadata": entry["frames_metadata"]}
        return {"status": "failure", "error_type": "invalid_payload", "error_class": "ValueError",
                "error_message": "unknown command %r" % kind, "public_error_message": "Unknown command."}


def worker_main(commands, answers):
    """Serves commands until terminate. It restores the default SIGTERM and
    SIGINT actions (fork copied the manager's handlers)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    pipeline = None
    while True:
        cmd = commands.get()
        kind = cmd.get("type")
        if kind == "terminate":
            answers.put({"request_id": cmd.get("request_id"), "response": {"status": "success"}})
            return
        if kind == "init":
            if pipeline is not None:
                response = not_allowed("Pipeline already initialised.")
            else:
                problems = check_init_payload(cmd.get("payload") or {})
                if problems:
                    response = {"status": "failure", "error_type": "invalid_payload",
                                "error_class": "ValidationError", "error_message": "; ".join(problems),
                                "public_error_message": "Could not decode InferencePipeline initialisation "
                                                        "command payload."}
                else:
                    pipeline = Pipeline(cmd["payload"])
                    response = {"status": "success"}
        elif pipeline is None:
            response = {"status": "failure", "error_type": "operation_error", "error_class": "RuntimeError",
                        "error_message": "Pipeline not initialised.", "public_error_message":
                        "Pipeline not initialised."}
        else:
            response = pipeline.command(kind, cmd)
        answers.put({"request_id": cmd.get("request_id"), "response": response})
