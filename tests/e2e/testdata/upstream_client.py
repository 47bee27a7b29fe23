#!/usr/bin/env python3
"""Emulates the socket code of the upstream `inference` StreamManagerClient
(inference/core/interfaces/stream_manager/api/stream_manager_client.py and
communication.py) closely enough to tell whether that client would work
against a server, and runs one scenario with it.

Usage: upstream_client.py HOST PORT

Prints one JSON line per step: {"step": name, "ok": bool, ...}. Exits 0 when
every step succeeded, 1 otherwise. Standard library only.
"""

import json
import socket
import sys
import time
from datetime import datetime

HEADER_SIZE = 4
SOCKET_BUFFER_SIZE = 16384
RESPONSE_KEY = "response"
STATUS_KEY = "status"
ERROR_TYPE_KEY = "error_type"


class ProcessesManagerClientError(Exception):
    pass


class ProcessesManagerInternalError(ProcessesManagerClientError):
    pass


class ProcessesManagerInvalidPayload(ProcessesManagerClientError):
    pass


class ProcessesManagerNotFoundError(ProcessesManagerClientError):
    pass


class ProcessesManagerOperationError(ProcessesManagerClientError):
    pass


class ProcessesManagerAuthorisationError(ProcessesManagerClientError):
    pass


class MalformedHeaderError(ProcessesManagerClientError):
    pass


class TransmissionChannelClosed(ProcessesManagerClientError):
    pass


ERRORS_MAPPING = {
    "internal_error": ProcessesManagerInternalError,
    "invalid_payload": ProcessesManagerInvalidPayload,
    "not_found": ProcessesManagerNotFoundError,
    "operation_error": ProcessesManagerOperationError,
    "authorisation_error": ProcessesManagerAuthorisationError,
}


def send_command(host, port, command, timeout):
    """One request per connection, as upstream: connect, sendall(header +
    JSON), one recv(HEADER_SIZE) for the header, then the body in a loop."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        payload = json.dumps(command).encode("utf-8")
        sock.sendall(len(payload).to_bytes(length=HEADER_SIZE, byteorder="big") + payload)
        header = sock.recv(HEADER_SIZE)  # ONE call, as upstream: a short read is fatal
        if len(header) != HEADER_SIZE:
            raise MalformedHeaderError(f"Header size missmatch: got {len(header)} bytes")
        payload_size = int.from_bytes(bytes=header, byteorder="big")
        received = b""
        while len(received) < payload_size:
            chunk = sock.recv(min(SOCKET_BUFFER_SIZE, payload_size - len(received)))
            if len(chunk) == 0:
                raise TransmissionChannelClosed("Socket was closed to read before payload was decoded.")
            received += chunk
    finally:
        sock.close()
    response = json.loads(received.decode("utf-8"))
    if is_request_unsuccessful(response):
        dispatch_error(response)
    return response


def is_request_unsuccessful(response):
    return response.get(RESPONSE_KEY, {}).get(STATUS_KEY, "failure") != "success"


def dispatch_error(error_response):
    payload = error_response.get(RESPONSE_KEY, {})
    error_type = payload.get(ERROR_TYPE_KEY)
    error_class = payload.get("error_class", "N/A")
    error_message = payload.get("error_message", "N/A")
    public = payload.get("public_error_message", "N/A")
    if error_type in ERRORS_MAPPING:
        raise ERRORS_MAPPING[error_type](f"{public} ({error_type} - {error_class}: {error_message}.)")
    raise ProcessesManagerClientError(f"Unknown error with status: {error_response}")


def context_of(response):
    """CommandContext(request_id, pipeline_id), as the client builds it."""
    request_id = response["request_id"]
    pipeline_id = response["pipeline_id"]
    if not isinstance(request_id, str) or not request_id:
        raise ProcessesManagerClientError(f"request_id is not a string: {request_id!r}")
    if pipeline_id is not None and not isinstance(pipeline_id, str):
        raise ProcessesManagerClientError(f"pipeline_id is not a string or null: {pipeline_id!r}")
    return {"request_id": request_id, "pipeline_id": pipeline_id}


def parse_frame_metadata(entry):
    """FrameMetadata(frame_timestamp: datetime, frame_id: int, source_id: Optional[int])."""
    datetime.fromisoformat(entry["frame_timestamp"])
    if not isinstance(entry["frame_id"], int):
        raise ProcessesManagerClientError(f"frame_id is not an int: {entry!r}")
    if entry.get("source_id") is not None and not isinstance(entry["source_id"], int):
        raise ProcessesManagerClientError(f"source_id is not an int: {entry!r}")


class Client:
    def __init__(self, host, port, timeout=10.0):
        self.host, self.port, self.timeout = host, port, timeout

    def _send(self, command):
        return send_command(self.host, self.port, command, self.timeout)

    def list_pipelines(self):
        r = self._send({"type": "list_pipelines"})
        pipelines = r[RESPONSE_KEY]["pipelines"]
        if not isinstance(pipelines, list) or not all(isinstance(p, str) for p in pipelines):
            raise ProcessesManagerClientError(f"pipelines is not a list of ids: {pipelines!r}")
        return {"context": context_of(r), "pipelines": pipelines}

    def initialise_pipeline(self, video_reference):
        # InitialisePipelinePayload.model_dump(exclude_none=True), defaults included.
        command = {
            "type": "init",
            "video_configuration": {
                "type": "VideoConfiguration",
                "video_reference": video_reference,
                "source_buffer_filling_strategy": "DROP_OLDEST",
                "source_buffer_consumption_strategy": "EAGER",
            },
            "processing_configuration": {
                "type": "WorkflowConfiguration",
                "workspace_name": "e2e",
                "workflow_id": "brightness",
                "image_input_name": "image",
                "workflows_thread_pool_workers": 4,
                "cancel_thread_pool_tasks_on_exit": True,
                "video_metadata_input_name": "video_metadata",
            },
            "sink_configuration": {"type": "MemorySinkConfiguration", "results_buffer_size": 64},
            "predictions_queue_size": 512,
            "decoding_buffer_size": 64,
            "api_key": "e2e-key",
        }
        r = self._send(command)
        ctx = context_of(r)
        if not ctx["pipeline_id"]:
            raise ProcessesManagerClientError("init answered without a pipeline_id")
        return {"context": ctx, "status": r[RESPONSE_KEY][STATUS_KEY]}

    def get_status(self, pipeline_id):
        r = self._send({"type": "status", "pipeline_id": pipeline_id})
        report = r[RESPONSE_KEY]["report"]
        if not isinstance(report, dict):
            raise ProcessesManagerClientError(f"report is not a dict: {report!r}")
        return {"context": context_of(r), "report_keys": sorted(report)}

    def consume_pipeline_result(self, pipeline_id, excluded_fields):
        r = self._send({"type": "consume_result", "pipeline_id": pipeline_id, "excluded_fields": excluded_fields})
        outputs = r[RESPONSE_KEY]["outputs"]
        frames = r[RESPONSE_KEY]["frames_metadata"]
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            raise ProcessesManagerClientError(f"outputs is not a list of dicts: {outputs!r}")
        for f in frames:
            parse_frame_metadata(f)
        return {"context": context_of(r), "outputs": len(outputs), "frames_metadata": len(frames)}

    def pause_pipeline(self, pipeline_id):
        return {"context": context_of(self._send({"type": "mute", "pipeline_id": pipeline_id}))}

    def resume_pipeline(self, pipeline_id):
        return {"context": context_of(self._send({"type": "resume", "pipeline_id": pipeline_id}))}

    def terminate_pipeline(self, pipeline_id):
        return {"context": context_of(self._send({"type": "terminate", "pipeline_id": pipeline_id}))}


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    client = Client(host, port)
    ok = True
    state = {}

    def step(name, fn):
        nonlocal ok
        if not ok:
            return None
        start = time.monotonic()
        line = {"step": name}
        try:
            result = fn()
            line.update(ok=True, result=result)
        except Exception as e:  # every failure is reported, none is fatal to the report
            ok = False
            line.update(ok=False, error=f"{type(e).__name__}: {e}")
            result = None
        line["seconds"] = round(time.monotonic() - start, 4)
        print(json.dumps(line), flush=True)
        return result

    step("list", client.list_pipelines)
    r = step("init", lambda: client.initialise_pipeline("synthetic://160x120"))
    if r:
        state["id"] = r["context"]["pipeline_id"]
    step("status", lambda: client.get_status(state["id"]))
    step("consume", lambda: client.consume_pipeline_result(state["id"], ["image"]))
    step("pause", lambda: client.pause_pipeline(state["id"]))
    step("resume", lambda: client.resume_pipeline(state["id"]))
    step("terminate", lambda: client.terminate_pipeline(state["id"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
