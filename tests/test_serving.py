"""Issue 33, the served model's HTTP layer: ``attr2gender serve`` puts MLflow's scoring app behind a body cap, a
JSON depth limit and error answers without the server's stack trace (``tracking/serving.py``).

The guard is driven as an ASGI app directly (no socket, no HTTP client): a stand-in app for its contract, and
MLflow's own scoring app around a tiny untrained two-stage bundle for what a caller of the real server reads.
The real ``attr2gender serve`` process is started in ``test_explain_serve.py``."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket

import numpy as np
import pytest
from PIL import Image

from attr2gender.cli import main
from attr2gender.tracking.serving import MAX_JSON_DEPTH, GuardedApp, json_depth_exceeds


def _call(app, body: bytes = b"", chunks: int = 1, headers=None, path="/invocations", method="POST"):
    """One HTTP request through an ASGI app: (status, headers, body). ``chunks`` > 1 sends the body in pieces
    without a Content-Length, as a chunked upload does."""
    pieces = (
        [body[i::1] for i in range(1)]
        if chunks == 1
        else np.array_split(np.frombuffer(body, np.uint8), chunks)
    )
    pieces = [bytes(p) for p in pieces]
    head = [(b"content-type", b"application/json"), *(headers or [])]
    if chunks == 1:
        head.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": head,
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 5001),
        "client": ("127.0.0.1", 40000),
        "root_path": "",
    }
    incoming = [
        {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1} for i, p in enumerate(pieces)
    ]
    sent = []

    async def receive():
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(3600)  # a client that stays connected

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    text = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), text, len(incoming)


class _Recorder:
    """A stand-in app: answers what it is told and records the body it read."""

    def __init__(self, status=200, answer=b'{"predictions": []}', fail=False):
        self.status, self.answer, self.fail, self.bodies = status, answer, fail, []

    async def __call__(self, scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.bodies.append(body)
        if self.fail:
            raise RuntimeError("secret detail /srv/models/x.py line 12")
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self.answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self.answer})


@pytest.mark.parametrize(
    "text, deep",
    [
        (b'{"dataframe_split": {"columns": ["path"], "data": [["a.jpg"]]}}', False),
        (b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, False),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), True),
        (b'{"a": "' + b"[" * 500 + b'"}', False),  # brackets inside a string are text
        (b'{"a": "\\"' + b"[" * 500 + b'"}', False),  # an escaped quote does not end the string
        (b'{"a": "x\\\\"' + b", " + b"[" * 100 + b"]" * 100 + b"}", True),  # an escaped backslash does
    ],
)
def test_json_depth_counts_brackets_outside_strings(text, deep):
    assert json_depth_exceeds(text) is deep


def test_a_body_over_the_cap_is_refused_from_its_length_before_it_is_read():
    inner = _Recorder()
    status, _, text, unread = _call(GuardedApp(inner, max_body_bytes=1000), b"x" * 1001)
    assert status == 413 and inner.bodies == []
    assert unread == 1  # nothing was read: the Content-Length said enough
    answer = json.loads(text)
    assert answer["error_code"] == "REQUEST_TOO_LARGE" and "--max-body-mb" in answer["message"]


def test_a_chunked_body_is_refused_as_it_passes_the_cap():
    inner = _Recorder()
    status, _, text, unread = _call(GuardedApp(inner, max_body_bytes=1000), b"x" * 5000, chunks=10)
    assert status == 413 and inner.bodies == [] and unread > 0  # stopped reading at the cap


def test_a_body_at_the_cap_reaches_the_app_whole_and_its_answer_streams_through():
    inner = _Recorder()
    body = b'{"dataframe_records": [{"path": "' + b"a" * 900 + b'"}]}'
    for chunks in (1, 7):
        status, _, text, _ = _call(GuardedApp(inner, max_body_bytes=len(body)), body, chunks=chunks)
        assert status == 200 and text == b'{"predictions": []}'
    assert inner.bodies == [body, body]


def test_deep_json_is_a_400_naming_the_limit_and_never_reaches_the_parser():
    inner = _Recorder()
    status, _, text, _ = _call(GuardedApp(inner), b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and inner.bodies == []
    assert f"deeper than {MAX_JSON_DEPTH} levels" in json.loads(text)["message"]


def test_an_error_answer_loses_its_stack_trace_and_keeps_its_reason():
    trace = 'Traceback (most recent call last):\n  File "/srv/app.py", line 3, in f\nValueError: bad cap\n'
    answer = json.dumps({"error_code": "BAD_REQUEST", "message": "bad input", "stack_trace": trace}).encode()
    status, headers, text, _ = _call(GuardedApp(_Recorder(400, answer)), b"{}")
    assert status == 400
    assert json.loads(text) == {
        "error_code": "BAD_REQUEST",
        "message": "bad input Cause: ValueError: bad cap",
    }
    assert int(headers[b"content-length"]) == len(text)  # the shortened answer says its own length


def test_an_unexpected_failure_is_a_500_with_one_sentence_and_no_detail():
    status, _, text, _ = _call(GuardedApp(_Recorder(fail=True)), b"{}")
    assert status == 500
    answer = json.loads(text)
    assert answer["error_code"] == "INTERNAL_ERROR" and "secret" not in text.decode()


def _bundle(tmp_path):
    from attr2gender.data.attributes import STAGE_ONE_ATTRIBUTES
    from attr2gender.pipeline import Attr2GenderPipeline
    from attr2gender.tabular import logistic_from_coefficients
    from attr2gender.training import AttributeModel

    rng = np.random.default_rng(1)
    stage_two = logistic_from_coefficients(rng.normal(0, 1, 39), 0.1, list(STAGE_ONE_ATTRIBUTES))
    pipe = Attr2GenderPipeline.from_parts(
        AttributeModel(backbone="test_efficientnet", weights="none"),
        stage_two,
        image_size=32,
        device="cpu",
        num_workers=0,
        runtime="torch",
    )
    return pipe.save(tmp_path / "bundle", onnx=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """MLflow's scoring app for a tiny bundle, as ``attr2gender serve BUNDLE`` builds it, with and without
    the guard."""
    from mlflow.pyfunc import scoring_server

    from attr2gender.tracking.serving import build_app, load_served_model

    tmp = tmp_path_factory.mktemp("serve")
    model = load_served_model(str(_bundle(tmp)), workdir=tmp)
    return build_app(model, max_body_bytes=2**20), scoring_server.init(model)


def _photo() -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
        buffer, "PNG"
    )
    return base64.b64encode(buffer.getvalue()).decode()


def test_the_served_bundle_answers_through_the_guard_as_mlflow_does(served):
    guarded, plain = served
    body = json.dumps(
        {
            "dataframe_records": [{"image_base64": _photo()}, {"path": "/no/such.jpg"}],
            "params": {"align": "none"},
        }
    ).encode()
    results = [_call(app, body) for app in (guarded, plain)]
    assert results[0][0] == results[1][0] == 200 and results[0][2] == results[1][2]
    rows = json.loads(results[0][2])["predictions"]
    assert 0 <= rows[0]["male_probability"] <= 1 and rows[1]["male_probability"] is None


def test_mlflow_s_own_answers_that_the_guard_mends(served):
    guarded, plain = served
    wrong = json.dumps({"dataframe_records": [{"path": "x.jpg"}], "params": {"max_pixels": -1}}).encode()
    deep = b'{"dataframe_records": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    # MLflow alone: a stack trace in the 400, and deep JSON is a 500 (its parser recursing)
    assert "stack_trace" in json.loads(_call(plain, wrong)[2])
    with pytest.raises(RecursionError):  # a 500 from the server, with this in its log
        _call(plain, deep)
    status, _, text, _ = _call(guarded, wrong)
    assert status == 400 and "stack_trace" not in json.loads(text) and "Traceback" not in text.decode()
    assert "Cause: ValueError: max_pixels" in json.loads(text)["message"]  # the reason, without the trace
    assert _call(guarded, deep)[0] == 400
    assert _call(guarded, b" " * (2**20 + 1))[0] == 413


def test_serve_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = [
            ([str(tmp_path / "empty")], "neither a bundle folder"),
            (["--pretrained", "direct", str(tmp_path / "empty")], "not both"),
            (["--port", str(port)], f"cannot serve on 127.0.0.1:{port}"),
        ]
        for argv, says in cases:
            assert main(["serve", *argv]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], (argv, err)
    for argv in (["--port", "70000"], ["--max-body-mb", "0"]):
        with pytest.raises(SystemExit) as exit_:
            main(["serve", *argv])
        assert exit_.value.code == 2
