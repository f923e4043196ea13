"""The self-refreshing HTML status page served at ``/`` (inline template: nothing to package)."""

from __future__ import annotations

import time

from flask import render_template_string

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{{ refresh_s }}">
<title>samiam ML backend</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
 table { border-collapse: collapse; margin-bottom: 1.5em; }
 th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
 .down { color: #b00; font-weight: bold; } .ok { color: #070; }
</style></head><body>
<h1>samiam ML backend</h1>
<p>Model version <b>{{ model_version }}</b> &middot; mode <b>{{ mode }}</b> &middot;
 Redis <span class="{{ 'ok' if redis in ('ok', 'not used') else 'down' }}">{{ redis }}</span>
 &middot; queue depth <b>{{ queue_depth if queue_depth is not none else '?' }}</b>
 &middot; refreshed every {{ refresh_s }} s</p>
{% if error %}<p class="down">{{ error }}</p>{% endif %}
<h2>Workers ({{ workers|length }})</h2>
{% if workers %}<table><tr><th>name</th><th>state</th><th>device</th><th>current job</th></tr>
{% for w in workers %}<tr><td>{{ w.name }}</td><td>{{ w.state }}</td><td>{{ w.device }}</td>
<td>{{ w.job or '' }}</td></tr>{% endfor %}</table>
{% else %}<p class="down">No worker listens on the queue: start one with <code>samiam worker</code>.</p>{% endif %}
<h2>Projects</h2>
<p>Label Studio answers "Retrieved N predictions" even when it stored none: these counts are what
 reached it. <i>delivered</i> = answered in /predict or written back through the API.</p>
{% if projects %}<table id="projects"><tr><th>project</th><th>computed</th><th>delivered</th><th>failed</th>
<th>last failure</th></tr>
{% for p in projects %}<tr><td>{{ p.project }}</td><td>{{ p.computed }}</td><td>{{ p.delivered }}</td>
<td>{{ p.failed }}</td><td>{{ p.last_failure or '' }}</td></tr>{% endfor %}</table>
{% else %}<p>No prediction yet.</p>{% endif %}
<h2>Counters</h2>
<table>{% for name, value in counters %}<tr><td>{{ name }}</td><td>{{ value }}</td></tr>{% endfor %}</table>
<h2>Recent failures</h2>
{% if failures %}<table><tr><th>time (UTC)</th><th>project</th><th>task</th><th>state</th><th>reason</th></tr>
{% for f in failures %}<tr><td>{{ f.when }}</td><td>{{ f.project }}</td><td>{{ f.task }}</td>
<td>{{ f.state }}</td><td>{{ f.reason }}</td></tr>{% endfor %}</table>
{% else %}<p>None.</p>{% endif %}
<p>Per-task states: <code>/jobs?project=ID</code> &middot; Prometheus: <code>/metrics</code></p>
</body></html>"""


def render(*, model_version: str, mode: str, redis: str, queue_depth: int | None, workers: list[dict],
           projects: dict[str, dict], counters: dict[str, float], failures: list[dict], refresh_s: int,
           error: str | None) -> str:
    """The page; ``projects`` maps Label Studio project ids to ``{"computed", "delivered",
    "failed", "last_failure"}`` (:meth:`samiam.service.store.Store.project_stats`)."""
    rows = [{"project": key, **projects[key]}
            for key in sorted(projects, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))]
    failures = [{**f, "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(f.get("time", 0)))}
                for f in failures]
    return render_template_string(
        TEMPLATE, model_version=model_version, mode=mode, redis=redis, queue_depth=queue_depth,
        workers=workers, projects=rows, counters=sorted((k, f"{v:g}") for k, v in counters.items()),
        failures=failures, refresh_s=refresh_s, error=error)
