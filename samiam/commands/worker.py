"""``samiam worker``: take prediction jobs from the Redis queue (``REDIS_URL``) with the engine
loaded once; run one per GPU."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("worker", help="run a GPU worker for the service's queue",
                                   description=__doc__)
    parser.add_argument("--queue", help="queue name (default: SAMIAM_QUEUE or 'samiam')")
    parser.add_argument("--burst", action="store_true", help="quit when the queue is empty")
    parser.add_argument("--name", help="worker name shown on the status page (default: RQ's); a worker "
                        "restarted under its name replaces the dead one's registration")
    parser.set_defaults(func=run)


def run(args) -> int:
    from samiam.service.config import ServiceConfig
    from samiam.service.worker import run_worker

    run_worker(ServiceConfig.from_env(), queue_name=args.queue, burst=args.burst, name=args.name)
    return 0
