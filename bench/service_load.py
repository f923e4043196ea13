"""Load on the Redis-mode service: latency, throughput, errors and lost jobs of ``/predict``.

Usage::

    python bench/service_load.py                  # 200 requests x 8 clients, cached and uncached
    python bench/service_load.py --requests 50    # quicker

Starts (and stops, by PID) redis-server, gunicorn (2 processes, gthread), 2 ``samiam worker``
processes (classical proposer) and a fake Label Studio serving the images, all on loopback.
Each request is one ``/predict`` call with one task of its own id, as Label Studio sends them:

* ``cached-1``: one client, the same 256 px image every time (after one warm-up request), so the
  worker answers from its cache: this is the queue + HTTP overhead of the service alone;
* ``cached-8``: the same with 8 concurrent clients;
* ``uncached-8``: 8 clients, a distinct synthetic micrograph per request (128-256 px,
  ``samiam.synth.generate_scene``): inference included.

For each: p50 / p95 / max latency, throughput, errors (non-200 or an answer without the task's
prediction) and lost jobs (tasks whose prediction reached Label Studio neither in the answer nor
by write-back within ``--grace-s``; must be 0). The run is bounded by ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_stack import ServiceStack, task, wait_until

from samiam.synth import generate_scene

CACHED_SIDE = 256
UNCACHED_SIDES = (128, 160, 192, 224, 256)


def png(image: np.ndarray) -> bytes:
    """(H, W) float image in [0, 1] -> 8-bit PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def run_phase(stack: ServiceStack, name: str, urls: list[str], first_id: int, clients: int,
              ends: float, grace_s: float) -> dict:
    """``len(urls)`` requests (task ids from ``first_id``) from ``clients`` threads."""
    sessions = threading.local()
    latencies: list[float] = []
    errors: list[str] = []
    answered: set[int] = set()
    lock = threading.Lock()

    def one(index: int) -> None:
        if time.monotonic() > ends:
            return
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
        task_id = first_id + index
        started = time.perf_counter()
        try:
            answer = stack.predict([task(task_id, urls[index])], sessions.session)
        except requests.RequestException as error:
            with lock:
                errors.append(f"task {task_id}: {type(error).__name__}")
            return
        elapsed = time.perf_counter() - started
        ok = answer["status"] == 200 and len(answer.get("results", [])) == 1 and answer["results"][0]["result"]
        with lock:
            latencies.append(elapsed)
            if ok:
                answered.add(task_id)
            else:
                errors.append(f"task {task_id}: {str(answer)[:200]}")

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(len(urls))))
    wall = time.perf_counter() - started
    sent = set(range(first_id, first_id + len(urls)))

    def written() -> set[int]:
        return {p["task"] for p in stack.label_studio.predictions}
    missing = sent - answered
    if missing:  # late or failed tasks: their predictions may still arrive by write-back
        try:
            wait_until(lambda: missing <= written(), grace_s, "write-backs", poll_s=0.2)
        except AssertionError:
            pass
    lost = sorted(missing - written())
    ms = sorted(1000 * x for x in latencies)
    return {"phase": name, "requests": len(urls), "completed": len(latencies), "clients": clients,
            "p50_ms": statistics.median(ms) if ms else None,
            "p95_ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))] if ms else None,
            "max_ms": ms[-1] if ms else None, "throughput_rps": len(latencies) / wall, "wall_s": wall,
            "errors": len(errors), "lost": len(lost), "error_examples": errors[:3], "lost_tasks": lost[:10]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per phase (default 200)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="samiam worker processes (default 2)")
    parser.add_argument("--max-seconds", type=float, default=300, help="stop sending after this long")
    parser.add_argument("--grace-s", type=float, default=30, help="wait for write-backs of unanswered tasks")
    args = parser.parse_args()

    ends = time.monotonic() + args.max_seconds
    cached = png(generate_scene(0, 1, size=CACHED_SIDE).image)
    scenes = [png(generate_scene(i, 1 + i % 3, size=UNCACHED_SIDES[i % len(UNCACHED_SIDES)]).image)
              for i in range(args.requests)]
    with ServiceStack(workers=args.workers) as stack:
        cached_url = stack.label_studio.add_file("cached.png", cached)
        warm = stack.predict([task(1, cached_url)])
        assert warm["status"] == 200 and warm["results"], warm
        phases = [("cached-1", [cached_url] * args.requests, 1),
                  ("cached-8", [cached_url] * args.requests, args.clients),
                  ("uncached-8", [stack.label_studio.add_file(f"scene{i}.png", data) for i, data in enumerate(scenes)],
                   args.clients)]
        rows, first_id = [], 1000
        for name, urls, clients in phases:
            before = stack.counters()
            row = run_phase(stack, name, urls, first_id, clients, ends, args.grace_s)
            after = stack.counters()
            row["cache_hits"] = after["samiam_cache_hits_total"] - before["samiam_cache_hits_total"]
            rows.append(row)
            first_id += 100_000
            print(f"{row['phase']:>11}: {row['completed']}/{row['requests']} requests, {row['clients']} clients: "
                  f"p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms, max {row['max_ms']:.1f} ms, "
                  f"{row['throughput_rps']:.1f} req/s, errors {row['errors']}, lost {row['lost']}, "
                  f"cache hits {row['cache_hits']:g}", flush=True)
            for example in row["error_examples"]:
                print("    error:", example)
        lost = sum(row["lost"] for row in rows)
    print(f"lost_jobs={lost}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
