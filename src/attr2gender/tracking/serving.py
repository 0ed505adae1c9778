"""``attr2gender serve``: MLflow's scoring server for a bundle or a logged model, behind three guards.

The routes are MLflow's own (``/invocations``, ``/ping``, ``/health``, ``/version``; the request and answer
formats of ``mlflow models serve``), built by ``mlflow.pyfunc.scoring_server.init``. Plain
``mlflow models serve`` reads any request body whole (a 250 MB body cost the server 1 GB), answers deeply
nested JSON with a 500 (Python's parser recursing too deep) and puts the server's Python stack trace in its
400 answers. :class:`GuardedApp`, a plain ASGI wrapper around MLflow's app, closes all three:

- a body over ``max_body_bytes`` is refused with 413 and a message naming the cap, from its
  ``Content-Length`` before anything is read, or as soon as a chunked body passes it;
- a JSON body nested deeper than :data:`MAX_JSON_DEPTH` is refused with 400 before MLflow parses it;
- an error answer never carries a stack trace: ``stack_trace`` is dropped from MLflow's JSON errors (and
  written to the server's log instead), and an unexpected failure is a 500 with one generic sentence.

The served model is :mod:`attr2gender.tracking.pyfunc_model` (one input row, one output row; per-image and
per-request pixel caps): the body cap bounds what a request costs before those caps can be checked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import tempfile
import warnings
from pathlib import Path

from attr2gender.errors import UsageError

# Lazy imports: MLflow and the pipeline (torch) take seconds to import; the guard itself needs neither, so
# `attr2gender serve --help` and a failed port check stay instant.

MAX_BODY_MB = 64  # about 45 MB of JPEG as base64: more photos than one request's pixel cap admits
MAX_JSON_DEPTH = 32  # the served formats nest 3 to 4 levels ({"dataframe_split": {"data": [[...]]}})
SERVER_FAILED = "the server failed on this request; its log says why"  # a 500's whole answer
MAX_MESSAGE_CHARS = 1000  # of an error answer's message
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

log = logging.getLogger("attr2gender.serve")

# Inside a JSON string only a quote or an escape matters; outside, brackets open and close levels.
_JSON_TOKENS = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text ``body`` nests arrays and objects deeper than ``limit``; one pass over its
    brackets, quotes and escapes only (base64 has none of them), without parsing it."""
    depth, in_string = 0, False
    for match in _JSON_TOKENS.finditer(body):
        token = match.group()
        if in_string:
            if token == b'"':
                in_string = False
            continue  # an escape (\" included) inside a string
        if token == b'"':
            in_string = True
        elif token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def _json_answer(status: int, error_code: str, message: str):
    body = json.dumps({"error_code": error_code, "message": message}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, {"type": "http.response.body", "body": body, "more_body": False}


def _without_stack_trace(status: int, headers, body: bytes) -> bytes:
    """An error answer as the caller should read it: MLflow's JSON error minus its ``stack_trace`` (logged
    here instead); a 500 becomes one generic sentence (its cause is in the server's log)."""
    if status >= 500:
        log.error(
            "the served model failed on a request (%s): %s", status, body[:2000].decode(errors="replace")
        )
        return json.dumps({"error_code": "INTERNAL_ERROR", "message": SERVER_FAILED}).encode()
    content_type = dict(headers).get(b"content-type", b"")
    if b"json" not in content_type:
        return body
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    if not isinstance(answer, dict):
        return body
    trace = answer.pop("stack_trace", None)
    if trace:
        log.warning("stack trace of a %s answer (not sent to the caller):\n%s", status, trace)
        # The trace's last line is the exception itself ("ValueError: max_pixels must be ..."): the reason,
        # which MLflow's generic message ("Encountered an unexpected error ...") leaves out.
        cause = next((line for line in reversed(str(trace).splitlines()) if line.strip()), "")
        if cause and isinstance(answer.get("message"), str) and cause not in answer["message"]:
            answer["message"] += f" Cause: {cause.strip()}"
    message = answer.get("message")
    if isinstance(message, str) and len(message) > MAX_MESSAGE_CHARS:  # MLflow quotes the whole bad input
        answer["message"] = message[:MAX_MESSAGE_CHARS] + f"... ({len(message):,} characters in all)"
    return json.dumps(answer).encode()


class GuardedApp:
    """An ASGI app: ``app`` behind a body cap, a JSON depth limit and answers without stack traces."""

    def __init__(self, app, max_body_bytes: int = MAX_BODY_MB * 2**20, max_json_depth: int = MAX_JSON_DEPTH):
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be at least 1, got {max_body_bytes}")
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    def _too_large(self):
        mb = self.max_body_bytes / 2**20
        return _json_answer(
            413,
            "REQUEST_TOO_LARGE",
            f"the request body is over the server's cap of {mb:g} MB (attr2gender serve --max-body-mb); "
            "send fewer or smaller images per request",
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = None
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            refusal = self._too_large()
        body = b""
        if refusal is None:
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body_bytes:
                    refusal = self._too_large()
                    break
                chunks.append(chunk)
                more = message.get("more_body", False)
            body = b"".join(chunks)
        # Only a JSON body (CSV's quotes and brackets mean something else), and off the event loop: a body at
        # the cap takes seconds to scan, and /ping and the other requests must not wait for it.
        if (
            refusal is None
            and body
            and b"json" in headers.get(b"content-type", b"")
            and await asyncio.to_thread(json_depth_exceeds, body, self.max_json_depth)
        ):
            refusal = _json_answer(
                400,
                "INVALID_PARAMETER_VALUE",
                f"the JSON body nests deeper than {self.max_json_depth} levels; the served formats "
                '(e.g. {"dataframe_records": [{"image_base64": "..."}]}) need 3 or 4',
            )
        if refusal is not None:
            for message in refusal:
                await send(message)
            return
        await self._answer(scope, body, receive, send)

    async def _answer(self, scope, body: bytes, receive, send):
        delivered = False

        async def replay():  # the body, read once above, then whatever the client sends next (a disconnect)
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        start, parts, sent = None, [], False

        async def capture(message):
            nonlocal start, sent
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            if start["status"] < 400:  # a good answer streams through as it is
                if not sent:
                    await send(start)
                    sent = True
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            text = _without_stack_trace(start["status"], start.get("headers", []), b"".join(parts))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            if start["status"] >= 500:
                headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
                headers.append((b"content-type", b"application/json"))
            headers.append((b"content-length", str(len(text)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": text, "more_body": False})
            sent = True

        try:
            await self.app(scope, replay, capture)
        except Exception:  # logged here; the caller gets one sentence, never the trace
            log.exception("the served model failed on a request")
            if not sent:
                for message in _json_answer(500, "INTERNAL_ERROR", SERVER_FAILED):
                    await send(message)


def load_served_model(source: str | None, route: str | None = None, workdir: str | Path | None = None):
    """The MLflow pyfunc model to serve: an MLflow model URI (``runs:/…``, ``models:/…`` or a saved model
    folder with an ``MLmodel`` file), a pipeline bundle folder, or, with ``source`` None, the shipped
    pretrained ``route``. A bundle is wrapped as :meth:`MlflowTracker.log_pyfunc_model` logs it (the same
    pyfunc code and signature), saved under ``workdir``."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line at start, not bars
    from attr2gender.pipeline.bundle import MANIFEST, looks_like_bundle, read_manifest
    from attr2gender.pipeline.loading import checked_pretrained

    from . import pyfunc_model
    from .mlflow_tracking import default_tracking_uri, pyfunc_signature

    folder = Path(source) if source is not None and ":/" not in source else None  # not a URI
    if source is None or (folder is not None and looks_like_bundle(folder)):
        # Checked without loading (the pins, or every file's hash and every manifest value), so a bad bundle
        # is refused before MLflow copies it; the model itself is loaded once, by MLflow, below.
        if source is None:
            bundle, _ = checked_pretrained(route or "two_stage")
        else:
            bundle = folder
            read_manifest(bundle)
        target = Path(workdir or tempfile.mkdtemp(prefix="attr2gender-serve-")) / "model"
        with warnings.catch_warnings():  # "no input example": the signature is the model's whole contract
            warnings.filterwarnings("ignore", message=".*input example.*")
            mlflow.pyfunc.save_model(
                path=str(target),
                python_model=str(Path(pyfunc_model.__file__).resolve()),
                artifacts={pyfunc_model.BUNDLE_ARTIFACT: str(bundle.resolve())},
                signature=pyfunc_signature(),
            )
        return mlflow.pyfunc.load_model(
            str(target)
        )  # a BundleError from its load_context is the CLI's exit 2
    if folder is not None and not (folder / "MLmodel").is_file():
        raise UsageError(
            f"{source}: neither a bundle folder (no {MANIFEST}) nor an MLflow model (no MLmodel); give "
            "a bundle written by pipeline.save(), a runs:/<run_id>/model URI, or nothing for the shipped model"
        )
    mlflow.set_tracking_uri(default_tracking_uri())
    try:
        return mlflow.pyfunc.load_model(source)
    except Exception as exc:  # MLflow's errors for a missing run or model are many kinds
        raise UsageError(f"{source}: cannot load this MLflow model ({exc})") from None


def build_app(model, max_body_bytes: int = MAX_BODY_MB * 2**20):
    """MLflow's scoring app for ``model`` behind :class:`GuardedApp`."""
    from mlflow.pyfunc import scoring_server

    return GuardedApp(scoring_server.init(model), max_body_bytes=max_body_bytes)


def check_port_free(host: str, port: int) -> None:
    """A usage error naming the fix when ``host:port`` cannot be bound (in use, or not this machine's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(
                f"cannot serve on {host}:{port} ({exc.strerror or exc}); pass another --port, or a --host "
                "this machine has"
            ) from None
