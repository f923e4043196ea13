"""Scripted fault drills on the Redis-mode service; prints one table row per drill.

Usage::

    python bench/fault_drills.py              # every drill, production lease (20 s) and deadline
    python bench/fault_drills.py --quick      # lease 2 s / heartbeat 0.5 s: the same drills faster
    python bench/fault_drills.py --only many-tasks --tasks 500

Each drill starts its own stack on loopback (redis-server, gunicorn web tier, ``samiam worker``
processes, the fake Label Studio; see ``bench/service_stack.py``) and stops it by PID:

* ``worker-killed``: a worker is SIGKILLed inside a job (a 2048 px image keeps it busy for
  seconds); the job runs again on the other worker and its prediction is in the ``/predict``
  answer (deadline 80 s);
* ``worker-killed-late``: the same with ``PREDICT_DEADLINE_S=1``: the answer is empty (late) and
  the prediction is written back to Label Studio;
* ``redis-restart``: 3 jobs queued with no worker running, redis-server (``--appendonly yes``)
  restarted, then a worker starts: all 3 predictions reach Label Studio;
* ``redis-killed`` / ``redis-stopped``: redis-server SIGKILLed (a crash) or SIGTERMed, for
  ``REDIS_OUTAGE_S``, while both workers run jobs of a late batch of ``OUTAGE_TASKS`` tasks (some
  already written back), then started again on its append-only file (synced on every write): the
  workers ride the outage out, finish their jobs and write every prediction back;
* ``label-studio-down``: Label Studio goes away while a late job segments its image; the
  write-back is retried (``SAMIAM_WRITEBACK_RETRY_INTERVALS_S=1,1,2,2,3,3,5``), Label Studio
  comes back on the same port, and the prediction arrives;
* ``web-worker-killed``: the gunicorn worker process serving a ``/predict`` of 3 tasks is
  SIGKILLed while it waits (``PREDICT_DEADLINE_S=5``, ``SAMIAM_BATCH_GRACE_S=1``): the workers'
  sweep writes back what finished before the batch expired, the jobs finishing later write back
  their own;
* ``answer-lost``: two ``/predict`` calls answered in full; the fake Label Studio stores the
  first answer and loses the second (as when the web process dies after closing the batch, or
  the connection drops): the answer check (``SAMIAM_ANSWER_CHECK_S=1``) writes back the lost
  predictions and not the stored ones;
* ``many-tasks``: one ``/predict`` with 10,000 tasks (``--tasks``) of one 64 px image (one
  inference, then cache hits: the queue and the hand-over are what is drilled);
* ``many-tasks-late``: the same with ``PREDICT_DEADLINE_S=1``: the answer is empty (the drill
  fails if it is not) and every prediction is written back through the API.

Every drill counts the predictions Label Studio would hold for its tasks: those in ``/predict``
answers (Label Studio stores them) plus the POSTs the fake Label Studio recorded, and passes
only with **0 lost and 0 duplicated** (counted again ``SETTLE_S`` after the last one arrived).
Exit status 0 only when every drill passes.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rq import Queue

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
from fake_label_studio import FakeLabelStudio, two_texture_png
from service_processes import busy_workers, kill_busy_worker
from service_stack import ServiceStack, task, wait_until

from samiam.labelstudio.results import materials_from_results

BIG = 2048
"""Side (px) of the image that keeps a worker busy for seconds."""
QUICK_LEASE = {"SAMIAM_JOB_LEASE_S": "2", "SAMIAM_WORKER_HEARTBEAT_S": "0.5"}
SETTLE_S = 3.0
"""How long a drill keeps watching for duplicates after the last expected prediction arrived."""
MANY_TASKS = 10_000
OUTAGE_TASKS = 12
REDIS_OUTAGE_S = 3.0
MID_BATCH = 3
"""Write-backs done before the Redis outage of ``redis-killed`` and ``redis-stopped``."""
LATE_DEADLINE_S = 1.0
"""``PREDICT_DEADLINE_S`` of ``many-tasks-late``: short enough that even 500 cached tasks are late."""


@dataclass
class Tally:
    """Predictions Label Studio holds for one drill's ``tasks`` (task ids 1..tasks)."""

    tasks: int
    answered: list[int] = field(default_factory=list)
    """Task ids whose prediction was in a ``/predict`` answer."""
    written: list[int] = field(default_factory=list)
    """Task ids of the predictions POSTed to ``/api/predictions`` (one entry per POST)."""

    @property
    def delivered(self) -> int:
        return len(set(self.answered) | set(self.written))

    @property
    def lost(self) -> int:
        return self.tasks - self.delivered

    @property
    def duplicated(self) -> int:
        return len(self.answered) + len(self.written) - self.delivered


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def answered_ids(tasks: list[dict], answer: dict) -> list[int]:
    """Ids of the tasks whose predictions ``answer`` holds (Label Studio stores all or none)."""
    results = answer.get("results") or []
    return [t["id"] for t in tasks] if len(results) == len(tasks) else []


def predict_in_thread(stack: ServiceStack, tasks: list[dict]) -> tuple[threading.Thread, dict]:
    """POST /predict from a thread; ``answer`` gets the JSON, or ``{"error": ...}`` when the
    request itself failed (connection reset by a killed web process)."""
    answer: dict = {}

    def post():
        try:
            answer.update(stack.predict(tasks))
        except Exception as error:  # noqa: BLE001 - the drill reads it
            answer["error"] = f"{type(error).__name__}: {error}"

    thread = threading.Thread(target=post)
    thread.start()
    return thread, answer


def written_ids(*studios: FakeLabelStudio) -> list[int]:
    return [p["task"] for studio in studios for p in studio.predictions]


def wait_for_writes(count: int, timeout_s: float, *studios: FakeLabelStudio) -> list[int]:
    """Wait for ``count`` write-backs, then ``SETTLE_S`` more for duplicates; all write-backs."""
    wait_until(lambda: len(written_ids(*studios)) >= count, timeout_s, f"{count} write-backs")
    time.sleep(SETTLE_S)
    return written_ids(*studios)


def check_backend_counts(stack: ServiceStack, tally: Tally) -> None:
    """The backend's per-project counts (``/jobs``) must say what Label Studio holds."""
    totals = stack.jobs()["totals"]
    check(totals["computed"] == tally.tasks and totals["delivered"] == tally.delivered,
          f"/jobs counts {totals}, Label Studio holds {tally.delivered} of {tally.tasks}")


def check_prediction(prediction: dict, side: int) -> None:
    masks, _ = materials_from_results(prediction["result"])
    check(len(masks) >= 1 and masks.shape[1:] == (side, side), f"prediction masks {masks.shape}, not (K, {side}, {side})")


def drill_worker_killed(lease: dict, deadline_s: float | None) -> tuple[str, Tally]:
    env = {**lease, **({"PREDICT_DEADLINE_S": str(deadline_s)} if deadline_s is not None else {})}
    with ServiceStack(workers=2, env=env) as stack:
        url = stack.label_studio.add_file("big.png", two_texture_png(BIG, BIG))
        started = time.monotonic()
        tasks = [task(1, url)]
        thread, answer = predict_in_thread(stack, tasks)
        killed = kill_busy_worker(stack.redis.url, stack.workers)
        check(thread.is_alive() or deadline_s is not None, "the job finished before its worker was killed")
        thread.join(120)
        if deadline_s is None:
            check(len(answer.get("results", [])) == 1, f"/predict answered {str(answer)[:300]}")
            check_prediction(answer["results"][0], BIG)
            where = "in the /predict answer"
        else:
            check(answer.get("results") == [] and answer.get("late") == [1], f"/predict answered {str(answer)[:300]}")
            where = "written back to Label Studio"
        answered = answered_ids(tasks, answer)
        written = wait_for_writes(1 - len(answered), 120, stack.label_studio)
        if written:
            check_prediction(stack.label_studio.predictions[0], BIG)
        counters = stack.counters()
        check(counters["samiam_jobs_requeued_total"] == 1, f"requeued {counters['samiam_jobs_requeued_total']}")
        tally = Tally(1, answered, written)
        return (f"killed {killed} mid-job; the job ran again and its prediction arrived {where} "
                f"{time.monotonic() - started:.1f} s after the request"), tally


def drill_redis_restart(lease: dict) -> tuple[str, Tally]:
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
        written = wait_for_writes(3, 120, stack.label_studio)
        stored = {p["task"]: p for p in stack.label_studio.predictions}
        for i, side in enumerate(sides, 1):
            check_prediction(stored[i], side)
        return ("3 queued jobs survived a redis-server restart (AOF) and were written back by a worker "
                "started after it"), Tally(3, answered_ids(tasks, answer), written)


def drill_redis_outage(lease: dict, crash: bool) -> tuple[str, Tally]:
    """redis-server SIGKILLed (``crash``) or SIGTERMed while both workers run jobs of a late
    batch, back after ``REDIS_OUTAGE_S`` on its append-only file."""
    with ServiceStack(workers=2, env={**lease, "PREDICT_DEADLINE_S": "1"}, persistent_redis=True) as stack:
        sides = [BIG if i % 3 == 1 else 384 + 64 * i for i in range(1, OUTAGE_TASKS + 1)]
        tasks = [task(i, stack.label_studio.add_file(f"em{i}.png", two_texture_png(side, side)))
                 for i, side in enumerate(sides, 1)]
        started = time.monotonic()
        answer = stack.predict(tasks)
        check(answer.get("results") == [], f"/predict answered {str(answer)[:300]}")
        wait_until(lambda: len(written_ids(stack.label_studio)) >= MID_BATCH
                   and len(busy_workers(stack.redis.url)) == 2, 120,
                   f"{MID_BATCH} write-backs and both workers running a job")
        before = len(written_ids(stack.label_studio))
        stack.redis.kill() if crash else stack.redis.stop()
        time.sleep(REDIS_OUTAGE_S)
        stack.redis.start()  # same port and directory: the append-only file is read back
        written = wait_for_writes(len(tasks), 300, stack.label_studio)
        stored = {p["task"]: p for p in stack.label_studio.predictions}
        for i, side in enumerate(sides, 1):
            check_prediction(stored[i], side)
        dead = [name for name, process in stack.workers.items() if process.poll() is not None]
        check(not dead, f"workers {dead} exited")
        check(stack.health()["workers"] == 2, f"/health counts {stack.health()['workers']} workers, not 2")
        requeued = stack.counters().get("samiam_jobs_requeued_total", 0)
        check(requeued == 0, f"{requeued:g} jobs of live workers were reaped as abandoned after the outage")
        how = "SIGKILLed" if crash else "SIGTERMed"
        return (f"redis-server {how} for {REDIS_OUTAGE_S:g} s with {before} of {len(tasks)} tasks written back "
                "and both workers busy; every worker rode it out; all written back "
                f"{time.monotonic() - started:.0f} s after the request"), Tally(len(tasks), answered_ids(tasks, answer),
                                                                          written)


def drill_label_studio_down(lease: dict) -> tuple[str, Tally]:
    env = {**lease, "PREDICT_DEADLINE_S": "1", "SAMIAM_WRITEBACK_RETRY_INTERVALS_S": "1,1,2,2,3,3,5"}
    with ServiceStack(workers=1, env=env) as stack:
        studio = stack.label_studio
        tasks = [task(1, studio.add_file("big.png", two_texture_png(BIG, BIG)))]
        answer = stack.predict(tasks)
        check(answer.get("results") == [], f"/predict answered {str(answer)[:300]}")
        wait_until(lambda: studio.downloads == 1, 120, "the image download")
        studio.close()  # down while the job segments the image
        wait_until(lambda: stack.counters()["samiam_writeback_retries_total"] >= 2, 120, "2 failed write-backs")
        refused = stack.counters()["samiam_writeback_retries_total"]
        back = FakeLabelStudio(studio.httpd.server_port)
        try:
            back.files = studio.files
            written = wait_for_writes(1, 60, studio, back)
            check_prediction(back.predictions[0], BIG)
            wait_until(lambda: stack.jobs()["tasks"][0]["state"] == "written", 10, "state 'written'")
        finally:
            back.close()
        return (f"{refused:g} write-backs refused while Label Studio was down; the retry after its return "
                "stored it"), Tally(1, answered_ids(tasks, answer), written)


def drill_web_worker_killed(lease: dict) -> tuple[str, Tally]:
    env = {**lease, "PREDICT_DEADLINE_S": "5", "SAMIAM_BATCH_GRACE_S": "1"}
    with ServiceStack(workers=2, env=env, web_processes=1) as stack:
        studio = stack.label_studio
        sides = (256, BIG, BIG)
        tasks = [task(i, studio.add_file(f"em{i}.png", two_texture_png(side, side))) for i, side in enumerate(sides, 1)]
        thread, answer = predict_in_thread(stack, tasks)
        # Counted once the jobs are queued: a kill before that fails the request before it queued
        # anything (nothing to deliver), not one that waits.
        wait_until(lambda: stack.counters().get("samiam_jobs_queued_total") == len(tasks), 30,
                   "the jobs to be queued")
        [web_worker] = stack.web_workers()
        os.kill(web_worker, signal.SIGKILL)
        thread.join(30)
        check("error" in answer, f"/predict answered {str(answer)[:300]} although its process was killed")
        written = wait_for_writes(len(tasks), 180, studio)
        stored = {p["task"]: p for p in studio.predictions}
        for i, side in enumerate(sides, 1):
            check_prediction(stored[i], side)
        tally = Tally(len(tasks), [], written)
        check_backend_counts(stack, tally)
        return (f"gunicorn worker {web_worker} SIGKILLed while its /predict of {len(tasks)} tasks waited; "
                "the sweep of its expired batch and the late jobs wrote them back"), tally


def drill_many_tasks(lease: dict, count: int, deadline_s: float | None = None) -> tuple[str, Tally]:
    env = {**lease, **({"PREDICT_DEADLINE_S": str(deadline_s)} if deadline_s is not None else {})}
    with ServiceStack(workers=2, env=env) as stack:
        url = stack.label_studio.add_file("em.png", two_texture_png(64, 64))
        tasks = [task(i, url) for i in range(1, count + 1)]
        started = time.monotonic()
        answer = stack.predict(tasks, timeout_s=300)
        answered_after = time.monotonic() - started
        check(answer["status"] == 200, f"/predict answered {str(answer)[:300]}")
        if deadline_s is not None:
            check(answer["results"] == [],
                  f"every task finished within PREDICT_DEADLINE_S={deadline_s:g}: the late path was not drilled")
        answered = answered_ids(tasks, answer)
        written = wait_for_writes(count - len(answered), 120 + count * 0.2, stack.label_studio)
        tally = Tally(count, answered, written)
        check_backend_counts(stack, tally)
        return (f"/predict of {count} tasks answered in {answered_after:.1f} s with {len(answered)} predictions; "
                f"{len(written)} written back, the last {time.monotonic() - started:.0f} s after the request"), tally


def drill_answer_lost(lease: dict) -> tuple[str, Tally]:
    env = {**lease, "SAMIAM_ANSWER_CHECK_S": "1"}
    with ServiceStack(workers=1, env=env) as stack:
        tasks = [task(i, stack.label_studio.add_file(f"em{i}.png", two_texture_png(96, 96 + i))) for i in (1, 2, 3, 4)]
        stored = stack.predict(tasks[:2])
        lost = stack.predict(tasks[2:], lose_answer=True)
        check(answered_ids(tasks[:2], stored) == [1, 2] and answered_ids(tasks[2:], lost) == [3, 4],
              f"/predict answered {str(stored)[:200]} and {str(lost)[:200]}")
        written = wait_for_writes(2, 60, stack.label_studio)
        check(sorted(written) == [3, 4], f"written back: {written}, not the two lost answers [3, 4]")
        check(stack.counters()["samiam_answers_lost_total"] == 2, "answers_lost is not 2")
        tally = Tally(len(tasks), [1, 2], written)
        check_backend_counts(stack, tally)
        return ("two /predict answers of 2 tasks each; Label Studio stored the first, the second was lost on "
                "its way: the answer check (SAMIAM_ANSWER_CHECK_S=1) wrote back the lost two only"), tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="job lease 2 s, heartbeat 0.5 s")
    parser.add_argument("--tasks", type=int, default=MANY_TASKS, help="tasks of the many-tasks drill")
    parser.add_argument("--only", action="append", help="run only this drill (repeatable)")
    args = parser.parse_args()
    lease = QUICK_LEASE if args.quick else {}
    drills: dict[str, Callable[[], tuple[str, Tally]]] = {
        "worker-killed": lambda: drill_worker_killed(lease, None),
        "worker-killed-late": lambda: drill_worker_killed(lease, 1.0),
        "redis-restart": lambda: drill_redis_restart(lease),
        "redis-killed": lambda: drill_redis_outage(lease, crash=True),
        "redis-stopped": lambda: drill_redis_outage(lease, crash=False),
        "label-studio-down": lambda: drill_label_studio_down(lease),
        "web-worker-killed": lambda: drill_web_worker_killed(lease),
        "answer-lost": lambda: drill_answer_lost(lease),
        "many-tasks": lambda: drill_many_tasks(lease, args.tasks),
        "many-tasks-late": lambda: drill_many_tasks(lease, args.tasks, deadline_s=LATE_DEADLINE_S)}
    print("| drill | result | tasks | delivered | lost | duplicated | seconds | detail |")
    print("|---|---|---|---|---|---|---|---|")
    failed = 0
    for name, drill in drills.items():
        if args.only and name not in args.only:
            continue
        verdict, counts, detail = run_drill(drill)
        failed += verdict == "FAIL"
        print(f"| {name} | {verdict} | {counts} | {detail} |", flush=True)
    return 1 if failed else 0


def run_drill(drill: Callable[[], tuple[str, Tally]]) -> tuple[str, str, str]:
    """``(PASS or FAIL, "tasks | delivered | lost | duplicated | seconds", detail)`` of one drill."""
    started = time.monotonic()
    try:
        detail, tally = drill()
    except Exception as error:  # noqa: BLE001 - a drill's failure is its result
        return "FAIL", f"- | - | - | - | {time.monotonic() - started:.0f}", f"{type(error).__name__}: {error}"
    verdict = "PASS" if tally.lost == 0 and tally.duplicated == 0 else "FAIL"
    counts = (f"{tally.tasks} | {tally.delivered} | {tally.lost} | {tally.duplicated} | "
              f"{time.monotonic() - started:.0f}")
    return verdict, counts, detail


if __name__ == "__main__":
    sys.exit(main())
