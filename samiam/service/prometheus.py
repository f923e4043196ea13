"""The store's counters as Prometheus text (exposition format 0.0.4)."""

from __future__ import annotations

from samiam.service.store import latency_bucket

COUNTERS = {
    "jobs_queued": ("samiam_jobs_queued_total", "Tasks enqueued by /predict."),
    "jobs_started": ("samiam_jobs_started_total", "Task jobs a worker started."),
    "jobs_finished": ("samiam_jobs_finished_total", "Task jobs that produced a prediction."),
    "jobs_failed": ("samiam_jobs_failed_total", "Task jobs that failed (reason in /jobs and the log)."),
    "jobs_requeued": ("samiam_jobs_requeued_total", "Task jobs run again because their worker died mid-job."),
    "cache_hits": ("samiam_cache_hits_total", "Predictions served from the cache."),
    "cache_misses": ("samiam_cache_misses_total", "Cache look-ups that needed inference."),
    "batches_answered": ("samiam_batches_answered_total", "/predict calls answered with every prediction."),
    "batches_handed_over": ("samiam_batches_handed_over_total",
                            "/predict calls answered empty (late or failed tasks); results written back."),
    "writebacks_ok": ("samiam_writebacks_ok_total", "Predictions written back to Label Studio."),
    "writeback_retries": ("samiam_writeback_retries_total", "Write-back attempts that failed and were retried."),
    "writebacks_failed": ("samiam_writebacks_failed_total", "Write-backs that failed after the last retry."),
    "answers_checked": ("samiam_answers_checked_total",
                        "Answered or handed-over predictions looked for in Label Studio (the check)."),
    "answers_lost": ("samiam_answers_lost_total",
                     "Answered predictions that Label Studio did not store (answer lost); written back."),
    "handovers_lost": ("samiam_handovers_lost_total",
                       "Handed-over predictions whose write-back was never queued (its worker died); written back."),
    "answer_checks_failed": ("samiam_answer_checks_failed_total",
                             "Answer checks that could not reach Label Studio after the last retry."),
    "lessons_learned": ("samiam_lessons_learned_total", "Annotations (or rebuilds) learned into label prototypes."),
    "lessons_failed": ("samiam_lessons_failed_total", "Learning jobs that failed (reason on the status page)."),
    "clicks_answered": ("samiam_clicks_answered_total", "Smart-tool clicks answered with a region."),
    "clicks_failed": ("samiam_clicks_failed_total", "Smart-tool clicks that failed (reason in the answer and the log)."),
    "click_encoder_runs": ("samiam_click_encoder_runs_total",
                           "Clicks that ran SAM's image encoder (the rest used a cached embedding, or no SAM)."),
}


def render(counters: dict[str, float], buckets: tuple[float, ...], queue_depth: int, workers: int) -> str:
    """Prometheus text of the counters, the task latency histogram and two gauges."""
    lines = []
    for key, (name, text) in COUNTERS.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} counter", f"{name} {counters.get(key, 0):g}"]
    name = "samiam_task_seconds"
    lines += [f"# HELP {name} Time a worker spent on one task (download, cache, inference).",
              f"# TYPE {name} histogram"]
    cumulative = 0.0
    for bound in (*buckets, float("inf")):
        cumulative += counters.get(latency_bucket(bound, buckets), 0)
        lines.append(f'{name}_bucket{{le="{"+Inf" if bound == float("inf") else f"{bound:g}"}"}} {cumulative:g}')
    lines += [f"{name}_sum {counters.get('latency_sum', 0):g}", f"{name}_count {counters.get('latency_count', 0):g}"]
    lines += ["# HELP samiam_queue_depth Jobs waiting in the queue.", "# TYPE samiam_queue_depth gauge",
              f"samiam_queue_depth {queue_depth}",
              "# HELP samiam_workers Workers listening on the queue.", "# TYPE samiam_workers gauge",
              f"samiam_workers {workers}"]
    return "\n".join(lines) + "\n"
