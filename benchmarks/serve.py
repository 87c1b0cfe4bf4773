"""Throughput and p50/p99 latency of `lepton serve` on loopback, batched (--max-batch 32) against --max-batch 1.

One real MiniLM + LoRA run on the demo topics (the text default). Each side is a real `lepton serve`
subprocess on 127.0.0.1; then 1, 8 and 32 concurrent clients (threads with their own httpx connection)
each send --requests single-text POST /predict requests, in turn side by side (batched, unbatched, batched, …)
for --reps rounds. Bounded: at most 32 × --requests requests per round and --timeout seconds per server start.

    .venv/bin/python benchmarks/serve.py [--requests 16] [--reps 2]

Last lines: serve_batched_vs_unbatched_throughput_32 (requests/s ratio at 32 clients) and serve_p99_ms_32
(batched), plus the same figures for 1 and 8 clients.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import ROOT, home, load_line, minilm_lora_run, table, text_splits

CLIENTS = (1, 8, 32)


def start(run_id: str, max_batch: int, timeout: float) -> tuple[subprocess.Popen, str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lepton", "serve", run_id, "--port", str(port), "--max-batch",
                             str(max_batch)], cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"lepton serve did not answer within {timeout:.0f} s")


def load(url: str, clients: int, requests: int, texts: list[str]) -> dict[str, float]:
    import httpx

    def client(c: int) -> list[float]:
        out = []
        with httpx.Client(timeout=60) as http:
            for i in range(requests):
                t0 = time.perf_counter()
                r = http.post(url + "/predict", json={"inputs": texts[(c * requests + i) % len(texts)]})
                r.raise_for_status()
                out.append((time.perf_counter() - t0) * 1000)
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        lat = sorted(x for xs in pool.map(client, range(clients)) for x in xs)
    wall = time.perf_counter() - t0
    return {"rps": len(lat) / wall, "p50": statistics.median(lat), "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=16, help="requests per client per round")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    home("serve")
    print(load_line("start"))
    run_id = minilm_lora_run(Path(tempfile.mkdtemp()))
    texts = [r["text"] for r in text_splits(1)["test"]]
    servers = {"batched": start(run_id, 32, args.timeout), "unbatched": start(run_id, 1, args.timeout)}
    try:
        for _, url in servers.values():  # warm-up
            load(url, 4, 2, texts)
        res: dict[tuple[str, int], list[dict[str, float]]] = {}
        for _ in range(args.reps):
            for n in CLIENTS:
                for side, (_, url) in servers.items():
                    res.setdefault((side, n), []).append(load(url, n, args.requests, texts))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(15)
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("rps", "p50", "p99")} for k, v in res.items()}
    print(table([[side, n, f"{med[side, n]['rps']:.1f}", f"{med[side, n]['p50']:.1f}", f"{med[side, n]['p99']:.1f}"]
                 for n in CLIENTS for side in servers], ["side", "clients", "requests/s", "p50 ms", "p99 ms"]))
    print(load_line("end"))
    for n in CLIENTS:
        print(f"serve_batched_vs_unbatched_throughput_{n}: {med['batched', n]['rps'] / med['unbatched', n]['rps']:.3f}")
        print(f"serve_p99_ms_{n}: {med['batched', n]['p99']:.1f}")


if __name__ == "__main__":
    main()
