"""`lepton serve`: a finished run (or an exported ONNX folder) behind FastAPI on uvicorn.

- POST /predict (Hugging Face Inference API style), GET /health, a KServe Open Inference Protocol V2
  subset (/v2/health/ready, /v2/models/{name}, /v2/models/{name}/infer), GET /metrics (Prometheus), /docs.
- Concurrent requests are grouped into one model call (up to max_batch items, or 5 ms after the first while
  others are still being decoded):
  one executor thread makes every model call, so torch's pinned threads never compete with each other.
- Every client mistake is a 4xx with {"error": "..."} saying what to send; nothing of it is logged as a
  traceback. Inputs are decoded per request, before batching, so one bad request cannot spoil a batch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from lepton.data import load_item
from lepton.errors import LeptonError
from lepton.filetypes import HEAD_BYTES, identify_head

log = logging.getLogger("lepton.serve")
MAX_WAIT_S = 0.005
DEFAULT_MAX_BYTES = 10 * 1024**2
SHAPE = {"text": '{"inputs": "some text"} or {"inputs": ["text 1", "text 2"]}',
         "image": '{"inputs": {"b64": "<base64 of an image file>"}} or a multipart upload of the file',
         "audio": '{"inputs": {"b64": "<base64 of a wav/flac/ogg file>"}} or a multipart upload of the file'}


class ClientError(Exception):
    """A request the client must change; its text says how."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Batcher:
    """Requests in, one model call per group out: up to max_batch items, or MAX_WAIT_S after the first."""

    def __init__(self, predict: Any, max_batch: int, on_batch: Any = lambda n: None):
        self.predict, self.max_batch, self.on_batch = predict, max(1, int(max_batch)), on_batch
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lepton-model")
        self.task: asyncio.Task | None = None
        # Requests being decoded right now: the group waits for them (up to MAX_WAIT_S), and only for them, so
        # a lone client never pays the wait (measured: 1 client, 18 ms with an unconditional wait, 15 without).
        self.arriving = 0

    async def submit(self, items: list[Any]) -> list[dict[str, Any]]:
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((items, fut))
        return await fut

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = [await self.queue.get()]
            deadline = loop.time() + MAX_WAIT_S
            while sum(len(items) for items, _ in group) < self.max_batch:
                left = deadline - loop.time()
                if left <= 0 or (self.queue.empty() and self.arriving == 0):
                    break
                try:
                    group.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            flat = [x for items, _ in group for x in items]
            try:
                out: list[dict[str, Any]] = []
                for i in range(0, len(flat), self.max_batch):
                    chunk = flat[i:i + self.max_batch]
                    self.on_batch(len(chunk))
                    out += await loop.run_in_executor(self.pool, self.predict, chunk)
            except Exception as e:  # noqa: BLE001 - a model failure fails this group's requests, not the server
                log.exception("model call failed")
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            start = 0
            for items, fut in group:
                if not fut.done():
                    fut.set_result(out[start:start + len(items)])
                start += len(items)


def _decode(modality: str, raw: Any, where: str) -> Any:
    """One input of a request -> a loaded item (str / RGB image / (wave, rate)), or a ClientError saying what to send."""
    if isinstance(raw, dict) and set(raw) == {"b64"} and isinstance(raw["b64"], str):
        try:
            data = base64.b64decode(raw["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise ClientError(400, f"{where}: 'b64' is not valid base64; send {SHAPE[modality]}") from None
    elif isinstance(raw, str) and modality == "text":
        data = raw
    elif isinstance(raw, (bytes, bytearray)):
        data = bytes(raw)
    else:
        kind = "a string" if isinstance(raw, str) else type(raw).__name__
        raise ClientError(400, f"{where}: got {kind}, but this model classifies {modality}; send {SHAPE[modality]}")
    if not data:
        raise ClientError(400, f"{where} is empty; send {SHAPE[modality]}")
    kind = identify_head(data[:HEAD_BYTES]) if isinstance(data, bytes) else None
    if kind is not None and kind.modality != modality:  # a PNG sent to a text model, a PDF to an image model
        raise ClientError(400, f"{where} is {kind.one}, but this model classifies {modality}; send {SHAPE[modality]}")
    try:
        item = load_item(modality, data)
    except LeptonError as e:
        raise ClientError(400, f"{where}: {e}") from None
    except Exception as e:  # noqa: BLE001 - decoders raise many kinds on hostile bytes; all mean "cannot decode"
        raise ClientError(400, f"{where}: cannot decode it as {modality} ({type(e).__name__}); send {SHAPE[modality]}") from None
    if modality == "text" and not str(item).strip():
        raise ClientError(400, f"{where} is empty; send {SHAPE[modality]}")
    return item


def _ranked(result: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(({"label": c, "score": round(float(p), 6)} for c, p in result["probs"].items()),
                  key=lambda d: -d["score"])


def _template(app: FastAPI, request: Request) -> str:
    """The route's template (/v2/models/{name}), never the raw path: unknown paths must not grow the metric's labels.
    Matched here too for a request the guard turned away (401, 413) before routing set scope["route"]."""
    route = request.scope.get("route")
    if route is None:
        route = next((r for r in app.router.routes if r.matches(request.scope)[0] == Match.FULL), None)
    return getattr(route, "path", "other")


def create_app(predictor: Any, token: str | None = None, max_batch: int = 32, max_bytes: int = DEFAULT_MAX_BYTES,
               load_seconds: float = 0.0):
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    registry = CollectorRegistry()  # one per app: two servers in one process (tests) keep their own figures
    requests = Counter("lepton_requests", "HTTP requests by path and status", ["path", "status"], registry=registry)
    latency = Histogram("lepton_request_seconds", "Request latency", ["path"], registry=registry,
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
    batches = Histogram("lepton_batch_size", "Items per model call", registry=registry,
                        buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
    Gauge("lepton_model_load_seconds", "Seconds to load the model", registry=registry).set(load_seconds)
    run_id = str(predictor.meta.get("run_id") or predictor.run_dir.name)
    modality, classes = predictor.modality, list(predictor.classes)
    batcher = Batcher(predictor.predict_batch, max_batch, on_batch=batches.observe)

    @asynccontextmanager
    async def lifespan(app: Any):
        batcher.task = asyncio.create_task(batcher.run())
        yield
        batcher.task.cancel()
        batcher.pool.shutdown(wait=False)

    app = FastAPI(title=f"Lepton model {run_id}", lifespan=lifespan,
                  description=f"{modality} classifier with classes: {', '.join(classes)}")
    app.state.batcher, app.state.batches = batcher, batches

    def error(status: int, message: str, **headers: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers or None)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        t0 = time.perf_counter()
        response = await _guarded(request, call_next)
        path = _template(app, request)
        requests.labels(path, str(response.status_code)).inc()
        latency.labels(path).observe(time.perf_counter() - t0)
        return response

    async def _guarded(request: Request, call_next: Any) -> Any:
        if token and request.url.path != "/health":
            got = request.headers.get("authorization", "")
            if not hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):
                return error(401, "missing or wrong token: send the header 'Authorization: Bearer <token>' "
                             "(the token `lepton serve --token` was given)", **{"WWW-Authenticate": "Bearer"})
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_bytes:
            return error(413, f"the request is {int(length):,} bytes; the limit is {max_bytes:,} "
                         "(`lepton serve --max-bytes`): send smaller inputs or fewer per request")
        return await call_next(request)

    @app.exception_handler(ClientError)
    async def client_error(request: Request, exc: ClientError) -> JSONResponse:
        return error(exc.status, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        hint = {404: "see /docs for the endpoints", 405: "see /docs for each endpoint's method"}.get(exc.status_code, "")
        return error(exc.status_code, f"{exc.detail}{'; ' + hint if hint else ''}")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(400, f"invalid request ({exc.errors()[0].get('msg', '') if exc.errors() else ''}); see /docs")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)  # our bug, not the client's: keep the traceback
        return error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    async def body(request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise ClientError(413, f"the request is over the {max_bytes:,}-byte limit (`lepton serve --max-bytes`)")
            chunks.append(chunk)
        request._body = b"".join(chunks)  # starlette's own cache: request.form() and .json() read it, not the spent stream
        return request._body

    async def json_body(request: Request) -> Any:
        raw = await body(request)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ClientError(400, f"the body is not valid JSON ({str(e).splitlines()[0][:120]}); send {SHAPE[modality]}") from None

    async def decode_all(raws: list[Any], where: str) -> list[Any]:
        if not raws:
            raise ClientError(400, f"{where} is empty; send {SHAPE[modality]}")
        return await asyncio.to_thread(lambda: [_decode(modality, r, f"{where}[{i}]" if len(raws) > 1 else where)
                                                for i, r in enumerate(raws)])

    async def predict(raws: list[Any], where: str) -> list[dict[str, Any]]:
        batcher.arriving += 1
        try:
            items = await decode_all(raws, where)
        finally:
            batcher.arriving -= 1
        return await batcher.submit(items)

    @app.post("/predict", summary="Classify inputs (Hugging Face Inference API style)")
    async def predict_endpoint(request: Request) -> Any:
        """Body: {"inputs": "text"}, {"inputs": ["t1", "t2"]}, {"inputs": {"b64": "..."}} or a multipart file upload.
        Returns, per input, [{"label", "score"}, ...] sorted by score."""
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            await body(request)  # enforces the size limit on streamed uploads before the form parser reads them
            form = await request.form()
            raws = [await f.read() for _, f in form.multi_items() if hasattr(f, "read")]
            if not raws:
                raise ClientError(400, "the multipart form has no file; attach the input as a file field (e.g. -F file=@x.png)")
        else:
            doc = await json_body(request)
            if not isinstance(doc, dict) or "inputs" not in doc:
                raise ClientError(400, f"the body needs an 'inputs' field; send {SHAPE[modality]}")
            raws = doc["inputs"] if isinstance(doc["inputs"], list) else [doc["inputs"]]
        return [_ranked(r) for r in await predict(raws, "inputs")]

    @app.get("/health", summary="Liveness, without the token")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "run_id": run_id}

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v2/health/ready", summary="Open Inference Protocol: ready")
    async def ready() -> dict[str, Any]:
        return {"ready": batcher.task is not None and not batcher.task.done()}

    def model_of(name: str) -> None:
        if name != run_id:
            raise ClientError(404, f"no model '{name}' here; this server serves '{run_id}' (GET /v2/models/{run_id})")

    @app.get("/v2/models/{name}", summary="Open Inference Protocol: model metadata")
    async def model_metadata(name: str) -> dict[str, Any]:
        model_of(name)
        return {"name": run_id, "versions": ["1"], "platform": "lepton",
                "inputs": [{"name": "inputs", "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(classes)]}],
                "parameters": {"modality": modality, "classes": classes}}

    @app.post("/v2/models/{name}/infer", summary="Open Inference Protocol: infer (one BYTES input)")
    async def infer(name: str, request: Request) -> dict[str, Any]:
        model_of(name)
        doc = await json_body(request)
        tensors = doc.get("inputs") if isinstance(doc, dict) else None
        if not isinstance(tensors, list) or not tensors or not isinstance(tensors[0], dict):
            raise ClientError(400, 'the body needs "inputs": [{"name": "inputs", "datatype": "BYTES", "shape": [N], '
                              '"data": [...]}] (texts, or base64 file bytes for images and audio)')
        t = tensors[0]
        if t.get("datatype") != "BYTES" or not isinstance(t.get("data"), list):
            raise ClientError(400, f"input '{t.get('name')}' must have datatype BYTES and a 'data' list")
        raws = t["data"] if modality == "text" else [{"b64": d} if isinstance(d, str) else d for d in t["data"]]
        results = await predict(raws, f"input '{t.get('name', 'inputs')}'")
        out = {"model_name": run_id, "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [len(results)], "data": [r["label"] for r in results]},
            {"name": "probabilities", "datatype": "FP32", "shape": [len(results), len(classes)],
             "data": [float(r["probs"][c]) for r in results for c in classes]}]}
        if isinstance(doc.get("id"), str):
            out["id"] = doc["id"]
        return out

    return app


def pin_threads() -> int:
    """One torch call at a time (the batcher's thread) on every core this process may use, no more."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(cores)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process (tests start several apps)
        pass
    return cores


def load(ref: str, onnx: bool = False, int8: bool = False) -> tuple[Any, float]:
    """(predictor, seconds it took): a run or safetensors export through Predictor, an ONNX folder through onnxruntime."""
    from lepton.backbones.multimodal import check_one_modality
    from lepton.predict import Predictor
    from lepton.tasks.base import check_exclusive

    t0 = time.perf_counter()
    if onnx or int8:
        from lepton.export.runtime import OnnxPredictor

        pred = OnnxPredictor.load(ref, int8=int8, threads=pin_threads())
    else:
        pin_threads()
        pred = Predictor.load(ref)
    check_exclusive(pred.task, "lepton serve", f"run '{pred.run_dir.name}'", "use `lepton predict` for this run")
    check_one_modality(pred.modality, "lepton serve", f"run '{pred.run_dir.name}'", "use `lepton predict` for this run")
    return pred, time.perf_counter() - t0


def serve(ref: str, host: str = "127.0.0.1", port: int = 8000, token: str | None = None, max_batch: int = 32,
          max_bytes: int = DEFAULT_MAX_BYTES, onnx: bool = False, int8: bool = False) -> None:
    import uvicorn

    pred, seconds = load(ref, onnx, int8)
    app = create_app(pred, token=token, max_batch=max_batch, max_bytes=max_bytes, load_seconds=seconds)
    print(f"lepton serve: {pred.meta.get('run_id')} ({pred.modality}, {len(pred.classes)} classes) on "
          f"http://{host}:{port} (docs at /docs){'; token required' if token else ''}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=True)
