"""Scripted fault drills on the Redis-mode service; prints PASS or FAIL per drill.

Usage::

    python bench/fault_drills.py              # every drill, production lease (20 s) and deadline
    python bench/fault_drills.py --quick      # lease 2 s / heartbeat 0.5 s: the same drills faster

Each drill starts its own stack on loopback (redis-server, gunicorn web tier, ``samiam worker``
processes, the fake Label Studio; see ``bench/service_stack.py``) and stops it by PID:

* ``worker-killed``: a worker is SIGKILLed inside a job (a 2048 px image keeps it busy for
  seconds); the job runs again on the other worker and its prediction is in the ``/predict``
  answer (deadline 80 s);
* ``worker-killed-late``: the same with ``PREDICT_DEADLINE_S=1``: the answer is empty (late) and
  the prediction is written back to Label Studio;
* ``redis-restart``: 3 jobs queued with no worker running, redis-server (``--appendonly yes``)
  restarted, then a worker starts: all 3 predictions reach Label Studio;
* ``label-studio-down``: Label Studio goes away while a late job segments its image; the
  write-back is retried (``SAMIAM_WRITEBACK_RETRY_INTERVALS_S=1,1,2,2,3,3,5``), Label Studio
  comes back on the same port, and the prediction arrives.

Exit status 0 only when every drill passes.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import redis
from rq import Queue

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
from fake_label_studio import FakeLabelStudio, two_texture_png
from service_processes import kill_busy_worker
from service_stack import ServiceStack, task, wait_until

from samiam.labelstudio.results import materials_from_results

BIG = 2048
"""Side (px) of the image that keeps a worker busy for seconds."""
QUICK_LEASE = {"SAMIAM_JOB_LEASE_S": "2", "SAMIAM_WORKER_HEARTBEAT_S": "0.5"}


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def predict_in_thread(stack: ServiceStack, tasks: list[dict]) -> tuple[threading.Thread, dict]:
    answer: dict = {}
    thread = threading.Thread(target=lambda: answer.update(stack.predict(tasks)))
    thread.start()
    return thread, answer


def written(stack: ServiceStack, label_studio: FakeLabelStudio | None = None) -> dict[int, dict]:
    return {p["task"]: p for p in (label_studio or stack.label_studio).predictions}


def check_prediction(prediction: dict, side: int) -> None:
    masks, _ = materials_from_results(prediction["result"])
    check(len(masks) >= 1 and masks.shape[1:] == (side, side), f"prediction masks {masks.shape}, not (K, {side}, {side})")


def drill_worker_killed(lease: dict, deadline_s: float | None) -> str:
    env = {**lease, **({"PREDICT_DEADLINE_S": str(deadline_s)} if deadline_s is not None else {})}
    with ServiceStack(workers=2, env=env) as stack:
        url = stack.label_studio.add_file("big.png", two_texture_png(BIG, BIG))
        started = time.monotonic()
        thread, answer = predict_in_thread(stack, [task(1, url)])
        killed = kill_busy_worker(stack.redis.url, stack.workers)
        check(thread.is_alive() or deadline_s is not None, "the job finished before its worker was killed")
        thread.join(120)
        if deadline_s is None:
            check(len(answer.get("results", [])) == 1, f"/predict answered {str(answer)[:300]}")
            check_prediction(answer["results"][0], BIG)
            where = "in the /predict answer"
        else:
            check(answer.get("results") == [] and answer.get("late") == [1], f"/predict answered {str(answer)[:300]}")
            wait_until(lambda: 1 in written(stack), 120, "the write-back")
            check_prediction(written(stack)[1], BIG)
            where = "written back to Label Studio"
        counters = stack.counters()
        check(counters["samiam_jobs_requeued_total"] == 1, f"requeued {counters['samiam_jobs_requeued_total']}")
        check(len(written(stack)) == (0 if deadline_s is None else 1), "duplicate or stray write-backs")
        return (f"killed {killed} mid-job; the job ran again and its prediction arrived {where} "
                f"{time.monotonic() - started:.1f} s after the request")


def drill_redis_restart(lease: dict) -> str:
    with ServiceStack(workers=0, env={**lease, "PREDICT_DEADLINE_S": "1"}, persistent_redis=True) as stack:
        sides = (128, 160, 192)
        tasks = [task(i, stack.label_studio.add_file(f"em{i}.png", two_texture_png(side, side)))
                 for i, side in enumerate(sides, 1)]
        answer = stack.predict(tasks)
        check(answer.get("late") == [1, 2, 3], f"/predict answered {str(answer)[:300]}")
        queue = Queue("samiam", connection=redis.Redis.from_url(stack.redis.url))
        check(queue.count == 3, f"{queue.count} jobs queued, not 3")
        stack.redis.stop()
        stack.redis.start()  # same port and directory: the append-only file is read back
        check(queue.count == 3, f"{queue.count} jobs left after the restart, not 3")
        stack.start_worker("late-worker")
        wait_until(lambda: len(written(stack)) == 3, 120, "3 write-backs")
        for i, side in enumerate(sides, 1):
            check_prediction(written(stack)[i], side)
        return "3 queued jobs survived a redis-server restart (AOF) and were written back by a worker started after it"


def drill_label_studio_down(lease: dict) -> str:
    env = {**lease, "PREDICT_DEADLINE_S": "1", "SAMIAM_WRITEBACK_RETRY_INTERVALS_S": "1,1,2,2,3,3,5"}
    with ServiceStack(workers=1, env=env) as stack:
        studio = stack.label_studio
        answer = stack.predict([task(1, studio.add_file("big.png", two_texture_png(BIG, BIG)))])
        check(answer.get("results") == [], f"/predict answered {str(answer)[:300]}")
        wait_until(lambda: studio.downloads == 1, 120, "the image download")
        studio.close()  # down while the job segments the image
        wait_until(lambda: stack.counters()["samiam_writeback_retries_total"] >= 2, 120, "2 failed write-backs")
        refused = stack.counters()["samiam_writeback_retries_total"]
        back = FakeLabelStudio(studio.httpd.server_port)
        try:
            back.files = studio.files
            stored = back.wait_for_predictions(1, 60)
            check([p["task"] for p in stored] == [1], f"Label Studio got {[p['task'] for p in stored]}")
            check_prediction(stored[0], BIG)
            wait_until(lambda: stack.jobs()["tasks"][0]["state"] == "written", 10, "state 'written'")
        finally:
            back.close()
        return f"{refused:g} write-backs refused while Label Studio was down; the retry after its return stored it"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="job lease 2 s, heartbeat 0.5 s")
    args = parser.parse_args()
    lease = QUICK_LEASE if args.quick else {}
    drills = {"worker-killed": lambda: drill_worker_killed(lease, None),
              "worker-killed-late": lambda: drill_worker_killed(lease, 1.0),
              "redis-restart": lambda: drill_redis_restart(lease),
              "label-studio-down": lambda: drill_label_studio_down(lease)}
    failed = 0
    for name, drill in drills.items():
        started = time.monotonic()
        try:
            detail, verdict = drill(), "PASS"
        except Exception as error:  # noqa: BLE001 - a drill's failure is its result
            detail, verdict = f"{type(error).__name__}: {error}", "FAIL"
            failed += 1
        print(f"{verdict} {name} ({time.monotonic() - started:.0f} s): {detail}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
