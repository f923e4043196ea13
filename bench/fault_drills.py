"""Scripted fault drills on the Redis-mode service; prints a PASS or FAIL row per drill.

Usage::

    python bench/fault_drills.py              # every drill, production lease (20 s) and deadline
    python bench/fault_drills.py --quick      # lease 2 s / heartbeat 0.5 s: the same drills faster
    python bench/fault_drills.py --quick redis-killed redis-stopped   # only these

Each drill starts its own stack on loopback (redis-server, gunicorn web tier, ``samiam worker``
processes, the fake Label Studio; see ``bench/service_stack.py``) and stops it by PID:

* ``worker-killed``: a worker is SIGKILLed inside a job (a 2048 px image keeps it busy for
  seconds); the job runs again on the other worker and its prediction is in the ``/predict``
  answer (deadline 80 s);
* ``worker-killed-late``: the same with ``PREDICT_DEADLINE_S=1``: the answer is empty (late) and
  the prediction is written back to Label Studio;
* ``redis-restart``: 3 jobs queued with no worker running, redis-server (append-only file, synced
  on every write) restarted, then a worker starts: all 3 predictions reach Label Studio;
* ``redis-killed`` / ``redis-stopped``: redis-server SIGKILLed (a crash) or SIGTERMed, for
  ``REDIS_OUTAGE_S``, while both workers run jobs of a late batch of ``OUTAGE_TASKS`` tasks (some
  already written back), then started again on its append-only file: the workers ride the
  outage out, finish their jobs and write every prediction back;
* ``label-studio-down``: Label Studio goes away while a late job segments its image; the
  write-back is retried (``SAMIAM_WRITEBACK_RETRY_INTERVALS_S=1,1,2,2,3,3,5``), Label Studio
  comes back on the same port, and the prediction arrives.

Each drill counts, per task, the predictions delivered — in a ``/predict`` answer or POSTed to
the fake Label Studio — once its stack is idle for a lease, and prints one table row: tasks,
delivered, lost, duplicated, seconds. A drill passes with 0 lost and 0 duplicated. Exit status 0
only when every drill passes.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rq import Queue
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
from fake_label_studio import FakeLabelStudio, two_texture_png
from service_processes import busy_workers, kill_busy_worker
from service_stack import ServiceStack, task, wait_until

from samiam.labelstudio.results import materials_from_results

BIG = 2048
"""Side (px) of the image that keeps a worker busy for seconds."""
QUICK_LEASE = {"SAMIAM_JOB_LEASE_S": "2", "SAMIAM_WORKER_HEARTBEAT_S": "0.5"}
PRODUCTION_LEASE_S = 20
OUTAGE_TASKS = 12
REDIS_OUTAGE_S = 3.0
MID_BATCH = 3
"""Write-backs done before the Redis outage of ``redis-killed`` and ``redis-stopped``."""


@dataclass
class Tally:
    """Deliveries per task id of one drill."""

    tasks: list[int]
    delivered: Counter = field(default_factory=Counter)
    detail: str = ""

    @property
    def lost(self) -> list[int]:
        return [t for t in self.tasks if not self.delivered[t]]

    @property
    def duplicated(self) -> int:
        return sum(count - 1 for count in self.delivered.values() if count > 1)


def tally(tasks: list[dict], answers: list[dict], label_studio: FakeLabelStudio, detail: str) -> Tally:
    """Deliveries of ``tasks``: results of their ``/predict`` ``answers`` (in task order) and
    predictions POSTed to ``label_studio``."""
    delivered = Counter(p["task"] for p in label_studio.predictions)
    for answer in answers:
        delivered.update(t["id"] for t, result in zip(tasks, answer.get("results") or []) if result)
    return Tally([t["id"] for t in tasks], delivered, detail)


def settle(stack: ServiceStack, lease: dict, timeout_s: float = 300) -> None:
    """Wait until no job is queued, running or scheduled, then one more lease (a job reaped
    twice, or a write-back sent twice, would show by then)."""
    connection = redis.Redis.from_url(stack.redis.url)
    queue = Queue("samiam", connection=connection)
    wait_until(lambda: queue.count == 0 and StartedJobRegistry(queue=queue).count == 0
               and ScheduledJobRegistry(queue=queue).count == 0, timeout_s, "the queue to empty", poll_s=0.2)
    time.sleep(float(lease.get("SAMIAM_JOB_LEASE_S", PRODUCTION_LEASE_S)) + 1)


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


def drill_worker_killed(lease: dict, deadline_s: float | None) -> Tally:
    env = {**lease, **({"PREDICT_DEADLINE_S": str(deadline_s)} if deadline_s is not None else {})}
    with ServiceStack(workers=2, env=env) as stack:
        tasks = [task(1, stack.label_studio.add_file("big.png", two_texture_png(BIG, BIG)))]
        started = time.monotonic()
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
            wait_until(lambda: 1 in written(stack), 120, "the write-back")
            check_prediction(written(stack)[1], BIG)
            where = "written back to Label Studio"
        arrived = time.monotonic() - started
        settle(stack, lease)
        counters = stack.counters()
        check(counters["samiam_jobs_requeued_total"] == 1, f"requeued {counters['samiam_jobs_requeued_total']}")
        return tally(tasks, [answer], stack.label_studio,
                     f"killed {killed} mid-job; the job ran again and its prediction arrived {where} "
                     f"{arrived:.1f} s after the request")


def drill_redis_restart(lease: dict) -> Tally:
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
        settle(stack, lease)
        return tally(tasks, [answer], stack.label_studio, "3 queued jobs survived a redis-server restart (AOF) "
                     "and were written back by a worker started after it")


def drill_redis_outage(lease: dict, crash: bool) -> Tally:
    """redis-server SIGKILLed (``crash``) or SIGTERMed while both workers run jobs of a late
    batch, back after ``REDIS_OUTAGE_S`` on its append-only file."""
    with ServiceStack(workers=2, env={**lease, "PREDICT_DEADLINE_S": "1"}, persistent_redis=True) as stack:
        sides = [BIG if i % 3 == 1 else 384 + 64 * i for i in range(1, OUTAGE_TASKS + 1)]
        tasks = [task(i, stack.label_studio.add_file(f"em{i}.png", two_texture_png(side, side)))
                 for i, side in enumerate(sides, 1)]
        started = time.monotonic()
        answer = stack.predict(tasks)
        check(answer.get("results") == [], f"/predict answered {str(answer)[:300]}")
        wait_until(lambda: len(written(stack)) >= MID_BATCH and len(busy_workers(stack.redis.url)) == 2, 120,
                   f"{MID_BATCH} write-backs and both workers running a job")
        before = len(written(stack))
        stack.redis.kill() if crash else stack.redis.stop()
        time.sleep(REDIS_OUTAGE_S)
        stack.redis.start()  # same port and directory: the append-only file is read back
        wait_until(lambda: len(set(written(stack))) == len(tasks), 300, f"{len(tasks)} write-backs")
        for i, side in enumerate(sides, 1):
            check_prediction(written(stack)[i], side)
        settle(stack, lease)
        dead = [name for name, process in stack.workers.items() if process.poll() is not None]
        check(not dead, f"workers {dead} exited")
        check(stack.health()["workers"] == 2, f"/health counts {stack.health()['workers']} workers, not 2")
        requeued = stack.counters().get("samiam_jobs_requeued_total", 0)
        check(requeued == 0, f"{requeued:g} jobs of live workers were reaped as abandoned after the outage")
        how = "SIGKILLed" if crash else "SIGTERMed"
        return tally(tasks, [answer], stack.label_studio,
                     f"redis-server {how} for {REDIS_OUTAGE_S:g} s with {before} of {len(tasks)} tasks written back "
                     "and both workers busy; "
                     f"every worker rode it out; all written back {time.monotonic() - started:.0f} s after the request")


def drill_label_studio_down(lease: dict) -> Tally:
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
            stored = back.wait_for_predictions(1, 60)
            check([p["task"] for p in stored] == [1], f"Label Studio got {[p['task'] for p in stored]}")
            check_prediction(stored[0], BIG)
            wait_until(lambda: stack.jobs()["tasks"][0]["state"] == "written", 10, "state 'written'")
            settle(stack, lease)
            return tally(tasks, [answer], back, f"{refused:g} write-backs refused while Label Studio was down; "
                         "the retry after its return stored it")
        finally:
            back.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="job lease 2 s, heartbeat 0.5 s")
    parser.add_argument("only", nargs="*", metavar="DRILL", help="run only these drills (default: all)")
    args = parser.parse_args()
    lease = QUICK_LEASE if args.quick else {}
    drills = {"worker-killed": lambda: drill_worker_killed(lease, None),
              "worker-killed-late": lambda: drill_worker_killed(lease, 1.0),
              "redis-restart": lambda: drill_redis_restart(lease),
              "redis-killed": lambda: drill_redis_outage(lease, crash=True),
              "redis-stopped": lambda: drill_redis_outage(lease, crash=False),
              "label-studio-down": lambda: drill_label_studio_down(lease)}
    unknown = set(args.only) - set(drills)
    if unknown:
        parser.error(f"unknown drills {sorted(unknown)}; choose from {list(drills)}")
    drills = {name: drill for name, drill in drills.items() if not args.only or name in args.only}
    print(f"{'':4}  {'drill':20} {'tasks':>5} {'delivered':>9} {'lost':>4} {'duplicated':>10} {'seconds':>7}  detail")
    failed = 0
    for name, drill in drills.items():
        started = time.monotonic()
        try:
            result = drill()
            verdict = "PASS" if not result.lost and not result.duplicated else "FAIL"
            row = (f"{len(result.tasks):5} {sum(result.delivered.values()):9} {len(result.lost):4} "
                   f"{result.duplicated:10}")
            detail = result.detail + (f"; lost tasks {result.lost}" if result.lost else "")
        except Exception as error:  # noqa: BLE001 - a drill's failure is its result
            verdict, row, detail = "FAIL", f"{'-':>5} {'-':>9} {'-':>4} {'-':>10}", f"{type(error).__name__}: {error}"
        failed += verdict == "FAIL"
        print(f"{verdict:4}  {name:20} {row} {time.monotonic() - started:7.0f}  {detail}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
