"""``samiam serve``: the Label Studio ML backend on http://HOST:PORT.

Without ``REDIS_URL`` it runs embedded (one process, jobs in threads, the engine loaded on the
first task; for a laptop). With ``REDIS_URL`` it runs the web tier under gunicorn (threads wait
on ``/predict`` while ``samiam worker`` processes do the work).
"""

from __future__ import annotations

DEFAULT_PORT = 9090
DEFAULT_THREADS = 16
"""Concurrent requests per web process (each ``/predict`` may wait up to PREDICT_DEADLINE_S)."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="run the Label Studio ML backend (web tier)",
                                   description=__doc__.split("\n\n")[1])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--processes", type=int, default=2,
                        help="gunicorn worker processes when REDIS_URL is set (default 2)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help=f"request threads per process (default {DEFAULT_THREADS})")
    parser.set_defaults(func=run)


def run(args) -> int:
    from samiam.service import ServiceConfig, create_app

    config = ServiceConfig.from_env()
    app = create_app(config)
    if config.embedded:
        from werkzeug.serving import run_simple
        print(f"samiam serve: embedded mode (no REDIS_URL) on http://{args.host}:{args.port}")
        run_simple(args.host, args.port, app, threaded=True)
        return 0
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):
        def load_config(self):
            for key, value in {"bind": f"{args.host}:{args.port}", "workers": args.processes,
                               "worker_class": "gthread", "threads": args.threads,
                               "timeout": int(config.predict_deadline_s) + 30}.items():
                self.cfg.set(key, value)

        def load(self):
            return app

    _Gunicorn().run()
    return 0
