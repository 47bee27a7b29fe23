#!/usr/bin/env python3
"""Conformance checks of a stream manager against what a user of the
upstream `inference` StreamManagerClient relies on, parsed as that client
and its models parse (issue 10): every timestamp through
datetime.fromisoformat, held to the exact form Python 3.8-3.10 accept
(YYYY-MM-DDTHH:MM:SS.ffffff, no zone), float fields as floats, failures as
the client's exception classes.

Usage: upstream_conformance.py HOST PORT CHECK [ARG...]

Prints one JSON line {"check": name, "ok": bool, "error": str, "notes": [...]}
and exits 0 when the check passed, 1 otherwise. Standard library only.
"""

import json
import os
import re
import socket
import sys
import time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from upstream_client import (  # noqa: E402
    HEADER_SIZE,
    ProcessesManagerClientError,
    ProcessesManagerInvalidPayload,
    ProcessesManagerNotFoundError,
    ProcessesManagerOperationError,
    context_of,
    send_command,
)

# What datetime.isoformat() writes for a naive datetime with microseconds,
# the only form Python 3.8-3.10's fromisoformat is sure to accept here.
PY38_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$")
STATES = {"NOT_STARTED", "INITIALISING", "RESTARTING", "RUNNING", "PAUSED", "MUTED", "TERMINATING", "ENDED", "ERROR"}
BOUND = 20.0  # seconds any awaited condition may take on a loaded machine


class Failed(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise Failed(message)


def parse_time(value, where):
    """As upstream's models do, with 3.8's strictness."""
    expect(isinstance(value, str) and PY38_ISO.match(value), f"{where}: {value!r} is not naive ISO-8601 with microseconds")
    parsed = datetime.fromisoformat(value)
    expect(parsed.tzinfo is None, f"{where}: {value!r} is timezone-aware")
    datetime.now() - parsed  # raises TypeError for an aware datetime, as client code would
    return parsed


def is_float(v):
    return isinstance(v, float)


class Manager:
    def __init__(self, host, port):
        self.host, self.port = host, port

    def send(self, command):
        return send_command(self.host, self.port, command, timeout=BOUND)

    def init(self, reference, video=None, **top):
        vc = {"type": "VideoConfiguration", "video_reference": reference,
              "source_buffer_filling_strategy": "DROP_OLDEST", "source_buffer_consumption_strategy": "EAGER"}
        vc.update(video or {})
        command = {
            "type": "init", "video_configuration": vc,
            "processing_configuration": {"type": "WorkflowConfiguration", "workspace_name": "e2e",
                                         "workflow_id": "brightness", "image_input_name": "image"},
            "sink_configuration": {"type": "MemorySinkConfiguration", "results_buffer_size": 64},
            "predictions_queue_size": 512, "decoding_buffer_size": 64, "api_key": "e2e-key",
        }
        command.update(top)
        response = self.send(command)
        pipeline_id = context_of(response)["pipeline_id"]
        expect(pipeline_id, "init answered without a pipeline_id")
        return pipeline_id

    def status(self, pid):
        return self.send({"type": "status", "pipeline_id": pid})["response"]["report"]

    def consume(self, pid):
        r = self.send({"type": "consume_result", "pipeline_id": pid, "excluded_fields": []})["response"]
        for f in r["frames_metadata"]:
            parse_time(f["frame_timestamp"], "frame_timestamp")
            expect(isinstance(f["frame_id"], int), f"frame_id {f['frame_id']!r} is not an int")
        return r

    def pipelines(self):
        return self.send({"type": "list_pipelines"})["response"]["pipelines"]

    def terminate(self, pid):
        try:
            self.send({"type": "terminate", "pipeline_id": pid})
        except ProcessesManagerClientError:
            pass  # already gone

    def wait(self, what, cond):
        deadline = time.monotonic() + BOUND
        while True:
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                raise Failed(f"timed out after {BOUND}s waiting for {what}")
            time.sleep(0.05)


def check_sources(m, notes, closed_port):
    """Every kind of video_reference upstream accepts answers init success;
    one that cannot be opened shows as ERROR with its reason in status."""
    refs = [f"rtsp://127.0.0.1:{closed_port}/cam", f"http://127.0.0.1:{closed_port}/stream.mjpeg",
            "/nonexistent/clip.mp4", 7, [f"rtsp://127.0.0.1:{closed_port}/a", "synthetic://32x24"]]
    for ref in refs:
        pid = m.init(ref)
        try:
            def errored():
                report = m.status(pid)
                src = report["sources_metadata"][0]
                if src["state"] != "ERROR":
                    return None
                reasons = [e["payload"].get("error_message") for e in report["video_source_status_updates"]
                           if e["severity"] >= 40 and e["payload"].get("source_id") == 0]
                return reasons[-1] if reasons and reasons[-1] else None
            reason = m.wait(f"{ref!r} to report ERROR with a reason", errored)
            notes.append(f"{ref!r}: {reason}")
            if isinstance(ref, list):
                report = m.status(pid)
                expect(len(report["sources_metadata"]) == 2, "a list of two sources reports one")
                expect(report["sources_metadata"][1]["source_id"] == 1, "the second source is not source_id 1")
        finally:
            m.terminate(pid)


def check_state_rules(m, notes):
    """mute only while running, resume only while muted or paused, else the
    client raises ProcessesManagerOperationError."""
    pid = m.init("synthetic://32x24?fps=25")
    try:
        m.wait("RUNNING", lambda: m.status(pid)["sources_metadata"][0]["state"] == "RUNNING")
        for command, state in (("resume", "RUNNING"), ("mute", None), ("mute", "MUTED"), ("resume", None)):
            try:
                m.send({"type": command, "pipeline_id": pid})
                expect(state is None, f"{command} while {state} succeeded")
            except ProcessesManagerOperationError as e:
                expect(state is not None, f"{command} failed: {e}")
                notes.append(f"{command} while {state}: {e}")
        expect(m.status(pid)["sources_metadata"][0]["state"] == "RUNNING", "not RUNNING after mute and resume")
    finally:
        m.terminate(pid)


def check_lifecycle(m, notes, path):
    """A pipeline whose file ended leaves list_pipelines once its results
    are consumed; status then answers not_found."""
    pid = m.init(path, {"source_buffer_filling_strategy": "WAIT", "source_buffer_consumption_strategy": "LAZY"})
    frames = []

    def ended():
        report = m.status(pid)
        return report["sources_metadata"][0]["state"] == "ENDED"
    m.wait("the file to end", ended)
    while True:  # the results are consumed; then the manager may remove it
        r = m.consume(pid)
        if not r["frames_metadata"]:
            break
        frames.extend(f["frame_id"] for f in r["frames_metadata"])
    m.wait("the ended pipeline to leave list_pipelines", lambda: pid not in m.pipelines())
    notes.append(f"consumed frames {frames}")
    expect(frames == list(range(1, len(frames) + 1)) and frames, f"frames {frames} are not 1..n")
    try:
        m.status(pid)
        raise Failed("status of a removed pipeline succeeded")
    except ProcessesManagerNotFoundError:
        pass


def check_report_shapes(m, notes):
    """Every key and type of the status report, as upstream sends them."""
    pid = m.init("synthetic://32x24?fps=0.5")
    try:
        report = m.status(pid)
        for key in ("video_source_status_updates", "latency_reports", "inference_throughput", "sources_metadata"):
            expect(key in report, f"report lacks {key}")
        expect(is_float(report["inference_throughput"]), f"inference_throughput {report['inference_throughput']!r} is not a float")
        expect(len(report["latency_reports"]) == 1, f"latency_reports {report['latency_reports']!r}: want one per source")
        first = report["latency_reports"][0]
        expect(first["source_id"] == 0, f"latency source_id {first!r}")
        for key in ("frame_decoding_latency", "inference_latency", "e2e_latency"):
            expect(key in first and first[key] is None, f"before the first frame {key} = {first.get(key)!r}, want None")
        m.wait("a source_properties object", lambda: m.status(pid)["sources_metadata"][0]["source_properties"])
        m.wait("a measured latency", lambda: m.status(pid)["latency_reports"][0]["e2e_latency"] is not None)
        report = m.status(pid)
        for e in report["video_source_status_updates"]:
            parse_time(e["timestamp"], "status update timestamp")
            expect(e["severity"] in (10, 20, 30, 40), f"severity {e['severity']!r}")
            expect(isinstance(e["event_type"], str) and isinstance(e["payload"], dict), f"event {e!r}")
            expect(isinstance(e["context"], str), f"event context {e!r}")
        for key in ("frame_decoding_latency", "inference_latency", "e2e_latency"):
            expect(is_float(report["latency_reports"][0][key]), f"{key} {report['latency_reports'][0][key]!r} is not a float")
        src = report["sources_metadata"][0]
        for key, kind in (("source_reference", str), ("buffer_size", int), ("state", str),
                          ("buffer_filling_strategy", str), ("buffer_consumption_strategy", str), ("source_id", int)):
            expect(isinstance(src.get(key), kind), f"sources_metadata.{key} = {src.get(key)!r}")
        expect(src["state"] in STATES, f"state {src['state']!r}")
        props = src["source_properties"]
        for key, kind in (("width", int), ("height", int), ("total_frames", int), ("is_file", bool), ("fps", float)):
            expect(isinstance(props.get(key), kind) and not (kind is int and isinstance(props[key], bool)),
                   f"source_properties.{key} = {props.get(key)!r}, want {kind.__name__}")
        expect("is_reconnectable" in props and isinstance(props["is_reconnectable"], bool),
               f"source_properties.is_reconnectable = {props.get('is_reconnectable')!r}")
        expect("timestamp_created" in props, "source_properties lacks timestamp_created")
        r = m.wait("a result", lambda: m.consume(pid)["outputs"] or None)
        for o in r:
            expect(isinstance(o, dict), f"output {o!r} is not an object")
        notes.append(f"source_properties {props}")
    finally:
        m.terminate(pid)


def check_buffer_semantics(m, notes):
    """The results sink keeps the newest results_buffer_size results whatever
    the filling strategy; WAIT does not stall the pipeline on a slow consumer."""
    for strategy in ("DROP_LATEST", "WAIT"):
        pid = m.init("synthetic://32x24?fps=50", {"source_buffer_filling_strategy": strategy},
                     sink_configuration={"type": "MemorySinkConfiguration", "results_buffer_size": 3})
        try:
            m.wait("frame 20 to be decoded", lambda: m.status(pid)["latency_reports"][0]["e2e_latency"] is not None)
            time.sleep(1.5)  # the slow consumer: the sink overflows meanwhile
            ids = []
            while True:
                r = m.consume(pid)
                if not r["frames_metadata"]:
                    break
                ids += [f["frame_id"] for f in r["frames_metadata"]]
            expect(len(ids) >= 1 and min(ids) > 3, f"{strategy}: consumed {ids}, want the newest frames, not 1-3")
            later = m.wait("a newer result", lambda: m.consume(pid)["frames_metadata"] or None)
            expect(later[0]["frame_id"] > max(ids), f"{strategy}: pipeline stalled at frame {max(ids)}")
            notes.append(f"{strategy}: consumed {ids} then {later[0]['frame_id']}")
        finally:
            m.terminate(pid)


def check_oversized(m, notes, limit):
    """An oversized request is answered with invalid_payload naming the limit."""
    command = {"type": "list_pipelines", "padding": "x" * (4 * limit)}
    try:
        m.send(command)
        raise Failed("an oversized request succeeded")
    except ProcessesManagerInvalidPayload as e:
        expect(str(limit) in str(e), f"the refusal does not name the limit {limit}: {e}")
        notes.append(str(e))


def main():
    host, port, check = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    args = sys.argv[4:]
    m = Manager(host, port)
    notes = []
    checks = {
        "sources": lambda: check_sources(m, notes, int(args[0])),
        "state_rules": lambda: check_state_rules(m, notes),
        "lifecycle": lambda: check_lifecycle(m, notes, args[0]),
        "report_shapes": lambda: check_report_shapes(m, notes),
        "buffer_semantics": lambda: check_buffer_semantics(m, notes),
        "oversized": lambda: check_oversized(m, notes, int(args[0])),
    }
    line = {"check": check, "ok": True, "notes": notes}
    try:
        checks[check]()
    except Exception as e:  # every failure is reported
        line.update(ok=False, error=f"{type(e).__name__}: {e}")
    print(json.dumps(line), flush=True)
    return 0 if line["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
