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
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from samiam.labelstudio.request import TaskRequest
from samiam.service.jobs import Dispatcher
from samiam.service.store import Store


@dataclass(frozen=True)
class BatchAnswer:
    """The body of a ``/predict`` answer."""

    results: list[dict]
    """One prediction per task, in task order; empty unless every task succeeded in time."""
    failed: list[dict] = field(default_factory=list)
    """``{"task": id, "reason": text}`` per failed task."""
    late: list = field(default_factory=list)
    """Ids of tasks still queued or running at the deadline (their jobs write them back)."""
    written_back: list = field(default_factory=list)
    """Ids of finished tasks whose predictions are being written back through the API."""

    def to_json(self) -> dict:
        body = {"results": self.results}
        if not self.results:
            body.update(failed=self.failed, late=self.late, written_back=self.written_back)
        return body


def predict_batch(requests: list[TaskRequest], *, store: Store, dispatcher: Dispatcher, deadline_s: float,
                  poll_s: float, clock=time.monotonic) -> BatchAnswer:
    """Run ``requests`` (tasks of one project with unique ids) and answer within ``deadline_s``.

    Waits blocked on the store (a finished task wakes it at once), ``poll_s`` at a time at most.
    """
    ends = clock() + deadline_s
    batch_id = uuid.uuid4().hex
    store.open_batch(batch_id)
    project, task_ids = requests[0].project, [r.task_id for r in requests]
    for request in requests:
        store.set_task(project, request.task_id, "queued", batch=batch_id)
        dispatcher.submit_predict(request.to_json(), batch_id)
        store.incr("jobs_queued")
    outcomes = store.collected(batch_id)
    # A failed task means an empty answer anyway: hand over at once instead of waiting.
    while len(outcomes) < len(task_ids) and all(o["ok"] for o in outcomes.values()) and clock() < ends:
        store.wait_for_deposit(batch_id, min(poll_s, ends - clock()))
        outcomes = store.collected(batch_id)
    if len(outcomes) == len(task_ids) and all(o["ok"] for o in outcomes.values()):
        store.incr("batches_answered")
        return BatchAnswer([outcomes[str(task_id)]["prediction"] for task_id in task_ids])
    outcomes = store.close_batch(batch_id)
    store.incr("batches_handed_over")
    answer = BatchAnswer([], [], [], [])
    for task_id in task_ids:
        outcome = outcomes.get(str(task_id))
        if outcome is None:
            answer.late.append(task_id)
        elif not outcome["ok"]:
            answer.failed.append({"task": task_id, "reason": outcome["reason"]})
        else:
            store.set_task(project, task_id, "writing_back", batch=batch_id)
            dispatcher.submit_write_back(task_id, outcome["prediction"], project)
            answer.written_back.append(task_id)
    return answer
