"""One ``/predict`` call: enqueue a job per task, wait up to the deadline, answer or hand over.

Label Studio stores the answer of ``/predict`` only when it holds exactly one result per task,
and stores even an empty result (which then blocks re-prediction with the same model version).
So the answer is all-or-nothing:

* every task predicted before the deadline -> ``{"results": [...]}``, one per task, in order;
* otherwise (a task failed, or the deadline passed) -> ``{"results": [], ...}`` with the failed
  and late task ids. Label Studio logs this as an error and stores nothing; every prediction
  that *did* succeed is written back through the Label Studio API instead (now for the finished
  ones, by the job itself for the late ones), and failed tasks stay without a prediction so
  that they are predicted again next time. No empty prediction is ever stored.

Either way the batch is closed first: the close decides which outcomes this request delivers.
It also files the batch for an answer check: an answer lost on its way (this process killed
before sending it, the connection dropped) is written back by the workers after
``SAMIAM_ANSWER_CHECK_S`` (:func:`samiam.service.jobs.hand_over_expired`).
The batch carries the deadline plus ``grace_s``: should this request die before closing it
(Redis away, its process killed), the sweep of expired batches
(:func:`samiam.service.jobs.hand_over_expired`) writes its finished predictions back, and jobs
finishing after that write back their own.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from samiam.labelstudio.request import TaskRequest
from samiam.service.jobs import Dispatcher, write_back_later
from samiam.service.store import Store, project_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchAnswer:
    """The body of a ``/predict`` answer."""

    results: list[dict]
    """One prediction per task, in task order; empty unless every task succeeded in time."""
    failed: list[dict] = field(default_factory=list)
    """``{"task": id, "reason": text}`` per failed task."""
    late: list = field(default_factory=list)
    """Ids of tasks not finished at the deadline (their jobs write them back)."""
    written_back: list = field(default_factory=list)
    """Ids of finished tasks whose predictions are being written back through the API."""

    def to_json(self) -> dict:
        body = {"results": self.results}
        if not self.results:
            body.update(failed=self.failed, late=self.late, written_back=self.written_back)
        return body


def predict_batch(requests: list[TaskRequest], *, store: Store, dispatcher: Dispatcher, deadline_s: float,
                  poll_s: float, grace_s: float, check_s: float, clock=time.monotonic) -> BatchAnswer:
    """Run ``requests`` (tasks of one project with unique ids) and answer within ``deadline_s``.

    Waits blocked on the store (a finished task wakes it at once), ``poll_s`` at a time at most.
    The close files the batch for an answer check ``check_s`` later.
    """
    ends = clock() + deadline_s
    batch_id = uuid.uuid4().hex
    project, ids = requests[0].project, [r.task_id for r in requests]
    store.open_batch(batch_id, project, time.time() + deadline_s + grace_s)
    dispatcher.submit_predictions([r.to_json() for r in requests], batch_id)
    store.incr("jobs_queued", len(ids))
    deposited, failed = store.progress(batch_id)
    # A failed task means an empty answer anyway: hand over at once instead of waiting.
    while deposited < len(ids) and not failed and clock() < ends:
        store.wait_for_deposit(batch_id, min(poll_s, ends - clock()))
        deposited, failed = store.progress(batch_id)
    # None: a sweep took it over (this request was too slow)
    outcomes = store.close_batch(batch_id, check_at=time.time() + check_s) or {}
    answered = [outcomes.get(str(task_id)) for task_id in ids]
    if all(outcome is not None and outcome["ok"] for outcome in answered):
        store.incr("batches_answered")
        store.set_tasks(project, ids, "answered", batch=batch_id)
        store.count_for_project(project, "delivered", len(ids))
        return BatchAnswer([outcome["prediction"] for outcome in answered])
    store.incr("batches_handed_over")
    finished = {task_id: o["prediction"] for task_id, o in zip(ids, answered) if o is not None and o["ok"]}
    write_back_later(store, dispatcher, project, finished, batch_id,
                     "its /predict answered empty (another task failed or was late)")
    answer = BatchAnswer([], [{"task": task_id, "reason": o["reason"]} for task_id, o in zip(ids, answered)
                              if o is not None and not o["ok"]],
                         [task_id for task_id, o in zip(ids, answered) if o is None], list(finished))
    _log_undelivered(project, answer, deadline_s)
    return answer


def _log_undelivered(project: str, answer: BatchAnswer, deadline_s: float) -> None:
    """WARNINGs naming every failed or late task and why: Label Studio only says "Retrieved N
    predictions", even when it stored none."""
    for failure in answer.failed:
        log.warning("project %s, task %s: failed, no prediction stored: %s", project_id(project),
                    failure["task"], failure["reason"])
    if answer.late:
        log.warning("project %s, tasks %s: not finished within PREDICT_DEADLINE_S=%g s; their jobs write them "
                    "back when done", project_id(project), answer.late, deadline_s)
