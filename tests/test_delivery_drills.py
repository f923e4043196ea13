"""Fast runs of the delivery drills of ``bench/fault_drills.py`` (the full table: docs/benchmarks.md):
each counts the predictions Label Studio would hold and must end with 0 lost and 0 duplicated.

Real redis-server, gunicorn web tier, ``samiam worker`` processes and the fake Label Studio.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from redis_server import redis_server_bin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from fault_drills import QUICK_LEASE, drill_answer_lost, drill_many_tasks, drill_web_worker_killed, run_drill

pytestmark = pytest.mark.skipif(redis_server_bin() is None, reason="redis-server is not installed")


def test_a_predict_whose_web_process_is_killed_while_it_waits_loses_nothing():
    verdict, counts, detail = run_drill(lambda: drill_web_worker_killed(QUICK_LEASE))
    assert (verdict, counts.split(" | ")[:4]) == ("PASS", ["3", "3", "0", "0"]), detail


def test_one_predict_with_many_tasks_delivers_each_exactly_once():
    verdict, counts, detail = run_drill(lambda: drill_many_tasks(QUICK_LEASE, 40))
    assert (verdict, counts.split(" | ")[:4]) == ("PASS", ["40", "40", "0", "0"]), detail


def test_an_answer_lost_on_its_way_is_written_back_and_a_stored_one_is_not():
    verdict, counts, detail = run_drill(lambda: drill_answer_lost(QUICK_LEASE))
    assert (verdict, counts.split(" | ")[:4]) == ("PASS", ["4", "4", "0", "0"]), detail
