"""lepton serve on a real uvicorn server on loopback: every endpoint, the token, bad requests, batching."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """create_app on uvicorn in a thread: the same app `lepton serve` runs, on a real socket."""

    def __init__(self, predictor, **kwargs):
        import uvicorn

        from lepton.serve import create_app

        self.app = create_app(predictor, **kwargs)
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            time.sleep(0.02)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def text_predictor(deploy_runs):
    from lepton.predict import Predictor

    os.environ["LEPTON_HOME"] = str(deploy_runs["text"].parents[1])
    return Predictor.load(deploy_runs["text"])


@pytest.fixture(scope="module")
def text_server(text_predictor):
    with Server(text_predictor, token=TOKEN, max_batch=8, max_bytes=64 * 1024) as s:
        yield s


def test_health_needs_no_token_and_everything_else_does(text_server):
    r = httpx.get(f"{text_server.url}/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "run_id": text_server.app.title.split()[-1]}
    for method, path in (("POST", "/predict"), ("GET", "/metrics"), ("GET", "/v2/health/ready"), ("GET", "/docs")):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = httpx.request(method, f"{text_server.url}{path}", headers=headers, json={"inputs": "x"})
            assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]
    assert httpx.get(f"{text_server.url}/docs", headers=AUTH).status_code == 200
    assert "/v2/models/{name}/infer" in httpx.get(f"{text_server.url}/openapi.json", headers=AUTH).json()["paths"]


def test_predict_answers_like_the_predictor(text_server, text_predictor):
    texts = ["the film was great, really great", "an awful meal, really awful"]
    one = httpx.post(f"{text_server.url}/predict", headers=AUTH, json={"inputs": texts[0]}).json()
    many = httpx.post(f"{text_server.url}/predict", headers=AUTH, json={"inputs": texts}).json()
    b64 = httpx.post(f"{text_server.url}/predict", headers=AUTH,
                     json={"inputs": {"b64": base64.b64encode(texts[1].encode()).decode()}}).json()
    upload = httpx.post(f"{text_server.url}/predict", headers=AUTH, files={"file": ("t.txt", texts[1].encode())}).json()
    expected = text_predictor.predict_batch(texts)
    assert len(one) == 1 and len(many) == 2
    for got, want in zip([one[0], *many, b64[0], upload[0]], [expected[0], *expected, expected[1], expected[1]]):
        assert [d["label"] for d in got] == sorted(want["probs"], key=lambda c: -want["probs"][c])  # sorted by score
        assert got[0]["label"] == want["label"] and abs(got[0]["score"] - want["probs"][want["label"]]) < 1e-5


BAD = [  # (what, request kwargs, status, words the error must contain)
    ("malformed JSON", {"content": b'{"inputs": '}, 400, "not valid JSON"),
    ("no inputs field", {"json": {"text": "x"}}, 400, "needs an 'inputs' field"),
    ("empty input", {"json": {"inputs": ""}}, 400, "is empty"),
    ("empty list", {"json": {"inputs": []}}, 400, "is empty"),
    ("blank text", {"json": {"inputs": ["   "]}}, 400, "is empty"),
    ("a number", {"json": {"inputs": 5}}, 400, "got int, but this model classifies text"),
    ("bad base64", {"json": {"inputs": {"b64": "@@not base64@@"}}}, 400, "not valid base64"),
    ("bytes that are not UTF-8", {"json": {"inputs": {"b64": base64.b64encode(b"\xff\xfe\xfa").decode()}}}, 400, "UTF-8"),
    ("an image sent to a text model", {"json": {"inputs": {"b64": base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()}}},
     400, "is a PNG image, but this model classifies text"),
    ("oversized", {"content": b'{"inputs": "' + b"a" * 70_000 + b'"}'}, 413, "limit is 65,536"),
    ("form without file", {"files": {"note": (None, b"1")}}, 400, "no file"),
]


@pytest.mark.parametrize("what,kwargs,status,words", BAD, ids=[b[0] for b in BAD])
def test_every_bad_request_gets_a_4xx_that_says_what_to_send(text_server, what, kwargs, status, words):
    r = httpx.post(f"{text_server.url}/predict", headers=AUTH, **kwargs)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_unknown_paths_and_methods_are_json_errors(text_server):
    r = httpx.get(f"{text_server.url}/nowhere", headers=AUTH)
    assert r.status_code == 404 and "see /docs" in r.json()["error"]
    r = httpx.get(f"{text_server.url}/predict", headers=AUTH)
    assert r.status_code == 405 and "error" in r.json()


def test_open_inference_protocol_v2(text_server, text_predictor):
    name = text_server.app.title.split()[-1]
    assert httpx.get(f"{text_server.url}/v2/health/ready", headers=AUTH).json() == {"ready": True}
    meta = httpx.get(f"{text_server.url}/v2/models/{name}", headers=AUTH).json()
    assert meta["name"] == name and meta["inputs"][0]["datatype"] == "BYTES"
    body = {"id": "req-1", "inputs": [{"name": "inputs", "datatype": "BYTES", "shape": [2], "data": ["great trip", "awful hotel"]}]}
    out = httpx.post(f"{text_server.url}/v2/models/{name}/infer", headers=AUTH, json=body).json()
    labels, probs = out["outputs"]
    assert out["id"] == "req-1" and labels["data"] == [r["label"] for r in text_predictor.predict_batch(["great trip", "awful hotel"])]
    assert probs["shape"] == [2, len(text_predictor.classes)] and len(probs["data"]) == 2 * len(text_predictor.classes)
    assert httpx.get(f"{text_server.url}/v2/models/other", headers=AUTH).status_code == 404
    bad = httpx.post(f"{text_server.url}/v2/models/{name}/infer", headers=AUTH,
                     json={"inputs": [{"name": "inputs", "datatype": "FP32", "data": [1.0]}]})
    assert bad.status_code == 400 and "BYTES" in bad.json()["error"]


def test_metrics_count_requests_latency_batches_and_load_time(text_server):
    httpx.post(f"{text_server.url}/predict", headers=AUTH, json={"inputs": "great"})
    httpx.post(f"{text_server.url}/predict", headers=AUTH, json={"inputs": ""})
    httpx.post(f"{text_server.url}/predict", json={"inputs": "great"})  # no token: turned away before routing
    text = httpx.get(f"{text_server.url}/metrics", headers=AUTH).text
    assert 'lepton_requests_total{path="/predict",status="200"}' in text
    assert 'lepton_requests_total{path="/predict",status="400"}' in text
    assert 'lepton_requests_total{path="/predict",status="401"}' in text
    for name in ("lepton_request_seconds_bucket", "lepton_batch_size_count", "lepton_model_load_seconds"):
        assert name in text


def test_the_server_keeps_serving_through_200_bad_requests(text_server, text_predictor):
    good = ["the film was great, really great", "an awful meal, really awful", "the concert was superb"]
    want = {t: r["label"] for t, r in zip(good, text_predictor.predict_batch(good))}
    bad = [kw for _, kw, _, _ in BAD]

    def call(i):
        if i % 3 == 0:
            t = good[i % len(good)]
            r = httpx.post(f"{text_server.url}/predict", headers=AUTH, json={"inputs": t}, timeout=30)
            return "good", r.status_code == 200 and r.json()[0][0]["label"] == want[t]
        r = httpx.post(f"{text_server.url}/predict", headers=AUTH, timeout=30, **bad[i % len(bad)])
        return "bad", 400 <= r.status_code < 500 and "error" in r.json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(300)))
    assert sum(kind == "bad" for kind, _ in results) == 200
    assert all(ok for _, ok in results)


def test_concurrent_requests_share_one_model_call(text_predictor):
    from lepton.serve import Batcher

    calls = []

    def predict(items):
        calls.append(len(items))
        return text_predictor.predict_batch(items)

    async def main():
        b = Batcher(predict, max_batch=32)
        task = asyncio.create_task(b.run())
        first, second = await asyncio.gather(b.submit(["great film"]), b.submit(["awful meal", "lovely trip"]))
        task.cancel()
        return first, second

    first, second = asyncio.run(main())
    assert calls == [3]  # two requests, one model call
    assert [r["label"] for r in first + second] == [r["label"] for r in text_predictor.predict_batch(["great film", "awful meal", "lovely trip"])]


def test_an_image_server_decodes_files_and_refuses_what_is_not_an_image(deploy_runs):
    from PIL import Image

    from lepton.predict import Predictor

    pred = Predictor.load(deploy_runs["image"])
    img = next(deploy_runs["image"].parents[1].glob("datasets/*/files/**/*.png"), None)
    buf = io.BytesIO()
    (Image.open(img) if img else Image.new("RGB", (32, 32), (200, 30, 30))).save(buf, format="PNG")
    png = buf.getvalue()
    with Server(pred) as s:
        good = httpx.post(f"{s.url}/predict", json={"inputs": {"b64": base64.b64encode(png).decode()}}).json()
        assert good[0][0]["label"] == pred.predict(png)["label"]
        upload = httpx.post(f"{s.url}/predict", files={"file": ("x.png", png, "image/png")}).json()
        assert upload[0][0]["label"] == good[0][0]["label"]
        r = httpx.post(f"{s.url}/predict", json={"inputs": "a cat"})
        assert r.status_code == 400 and "this model classifies image" in r.json()["error"]
        r = httpx.post(f"{s.url}/predict", json={"inputs": {"b64": base64.b64encode(b"not an image at all").decode()}})
        assert r.status_code == 400 and "inputs" in r.json()["error"]
        r = httpx.post(f"{s.url}/predict", files={"file": ("x.png", b"\x89PNG\r\n\x1a\n broken")})
        assert r.status_code == 400


def test_an_onnx_export_serves_the_same_answers(deploy_runs, in_deploy_home, tmp_path):
    from lepton.export import export
    from lepton.export.runtime import OnnxPredictor
    from lepton.predict import Predictor

    out = tmp_path / "onnx"
    export(deploy_runs["text"], "onnx", out, int8=True)
    texts = ["the film was great, really great", "an awful meal, really awful", "the hotel"]
    want = Predictor.load(deploy_runs["text"]).predict_batch(texts)
    for int8 in (False, True):
        got = OnnxPredictor.load(out, int8=int8).predict_batch(texts)
        assert [g["label"] for g in got] == [w["label"] for w in want]
        if not int8:
            assert max(abs(g["probs"][c] - w["probs"][c]) for g, w in zip(got, want) for c in w["probs"]) < 1e-4


def test_lepton_serve_as_a_user_starts_it(deploy_runs, deploy_home, tmp_path):
    port = _free_port()
    env = {**os.environ, "LEPTON_HOME": str(deploy_home)}
    proc = subprocess.Popen([sys.executable, "-m", "lepton", "serve", str(deploy_runs["text"]), "--port", str(port),
                             "--token", TOKEN], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        r = httpx.post(f"http://127.0.0.1:{port}/predict", headers=AUTH, json={"inputs": ["great", ""]})
        assert r.status_code == 400 and "inputs[1] is empty" in r.json()["error"]
        r = httpx.post(f"http://127.0.0.1:{port}/predict", headers=AUTH, json={"inputs": "the film was great"})
        assert r.status_code == 200 and {d["label"] for d in r.json()[0]} == {"neg", "pos"}
    finally:
        proc.terminate()
        log = proc.communicate(timeout=20)[0]
    assert "Traceback" not in log and f"http://127.0.0.1:{port}" in log
    bad = subprocess.run([sys.executable, "-m", "lepton", "serve", "no-such-run"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "no run 'no-such-run'" in bad.stderr and "Traceback" not in bad.stderr
