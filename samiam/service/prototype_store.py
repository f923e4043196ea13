"""Each project's learned label prototypes, kept as the set of its annotations' contributions.

A *contribution* is what one Label Studio annotation taught: :class:`Prototypes` learned from
that annotation alone (:func:`samiam.booster.prototypes.update` on empty prototypes), stamped
with the annotation's ``updated_at``. A project's prototypes are *derived* from the set of its
contributions (:func:`derive`), so that

* a re-delivered webhook stores the same contribution again: nothing is counted twice;
* an updated annotation replaces its earlier contribution; one older than the stored one (a
  late delivery of the CREATED after the UPDATED) is ignored;
* a deleted annotation leaves a *tombstone*, so that its learning job, if it runs later, adds
  nothing; a rebuild (``START_TRAINING``) replaces the whole set, except annotations learned
  from webhooks while it was reading;
* the result does not depend on the order in which contributions arrived: a rebuild from all
  the annotations equals the incremental result.

Two implementations, one per service mode: :class:`MemoryPrototypeStore` (a lock) and
:class:`RedisPrototypeStore` (``WATCH``/``MULTI``: a change made by another worker between the
read and the write makes the write fail and run again, so no update is lost). Both keep the
derived prototypes next to the contributions, so that a prediction reads one value.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np
import redis

from samiam.booster.prototypes import LabelPrototype, Prototypes
from samiam.errors import PrototypeError
from samiam.service.config import ServiceConfig
from samiam.service.redis_mode import redis_errors_as_unavailable
from samiam.service.store import PREFIX, project_id

log = logging.getLogger(__name__)

TOMBSTONE = {"deleted": True}
"""Contribution of a deleted annotation: it teaches nothing, and stops a late learning job."""
WATCH_RETRIES = 50
"""How often a Redis update is tried again when another worker changed the project meanwhile."""

Contributions = dict[str, dict]
"""Annotation id -> ``{"updated_at": str, "prototypes": Prototypes JSON}`` or :data:`TOMBSTONE`."""
Change = Callable[[Contributions], Contributions]
"""A pure function from a project's contributions to the new ones."""


def contribution(updated_at: str, prototypes: Prototypes) -> dict:
    """The stored form of one annotation's contribution."""
    return {"updated_at": updated_at, "prototypes": prototypes.to_json()}


def derive(contributions: Mapping[str, dict], capacity: int, seed: int) -> Prototypes | None:
    """A project's prototypes from its contributions; None when none teaches anything.

    Each label's exemplars are those of every contribution (in order of annotation id), ``seen``
    and ``images`` their sums; a label with more than ``capacity`` exemplars keeps a uniform
    sample of them, drawn with ``seed`` (the same for the same set, whatever the order of arrival).
    When contributions were made by different embedders (``merging.embedder`` changed, or its
    features did in an upgrade) only those made like the newest one count.
    """
    learned = [Prototypes.from_json(c["prototypes"]) for _, c in sorted(contributions.items(), key=_by_id)
               if "prototypes" in c]
    learned = [p for p in learned if p.labels]
    if not learned:
        return None
    newest = (learned[-1].embedder, learned[-1].blocks)
    stale = sum((p.embedder, p.blocks) != newest for p in learned)
    if stale:
        log.warning("%d of %d annotations were learned with another texture embedder than the newest (%s): "
                    "left out until 'Start training' learns them again", stale, len(learned), newest[0])
        learned = [p for p in learned if (p.embedder, p.blocks) == newest]
    by_name: dict[str, list[LabelPrototype]] = {}
    for prototypes in learned:
        for label in prototypes.labels:
            by_name.setdefault(label.name, []).append(label)
    labels = []
    for name, parts in by_name.items():
        exemplars = np.concatenate([part.exemplars for part in parts])
        if len(exemplars) > capacity:
            rng = np.random.default_rng([seed, len(exemplars)])
            exemplars = exemplars[np.sort(rng.choice(len(exemplars), capacity, replace=False))]
        labels.append(LabelPrototype(name, exemplars, sum(p.seen for p in parts), sum(p.images for p in parts)))
    return replace(learned[-1], labels=tuple(labels), unlearned=())


def _by_id(item: tuple[str, dict]) -> tuple[int, str]:
    key = item[0]
    return (int(key), key) if key.isdigit() else (-1, key)


def put(annotation: str, stored: dict) -> Change:
    """Store ``stored`` (a :func:`contribution`) for ``annotation`` unless the stored one is newer
    or a tombstone."""
    def change(contributions: Contributions) -> Contributions:
        earlier = contributions.get(annotation)
        if earlier is not None and (earlier.get("deleted") or earlier["updated_at"] > stored["updated_at"]):
            return contributions
        return {**contributions, annotation: stored}
    return change


def delete(annotations: list[str]) -> Change:
    """Replace the contributions of ``annotations`` with tombstones."""
    return lambda contributions: {**contributions, **dict.fromkeys(annotations, TOMBSTONE)}


def replace_all(new: Contributions, read_since: str) -> Change:
    """A rebuild: ``new`` (every annotation read from Label Studio from time ``read_since`` on,
    ISO 8601 UTC), plus the stored contributions of annotations updated after ``read_since``
    that the reading missed; tombstones dropped."""
    def change(contributions: Contributions) -> Contributions:
        later = {k: v for k, v in contributions.items()
                 if k not in new and not v.get("deleted") and v["updated_at"] > read_since}
        return {**new, **later}
    return change


class MemoryPrototypeStore:
    """Embedded mode: contributions and derived prototypes in dicts, under one lock."""

    def __init__(self, capacity: int, seed: int):
        self.capacity, self.seed = capacity, seed
        self._lock = threading.Lock()
        self._contributions: dict[str, Contributions] = {}
        self._derived: dict[str, Prototypes | None] = {}

    def update(self, project: str, change: Change) -> Prototypes | None:
        """Apply ``change`` to ``project``'s contributions; returns its new prototypes."""
        project = project_id(project)
        with self._lock:
            contributions = change(self._contributions.get(project, {}))
            derived = derive(contributions, self.capacity, self.seed)
            self._contributions[project], self._derived[project] = contributions, derived
            return derived

    def get(self, project: str) -> Prototypes | None:
        with self._lock:
            return self._derived.get(project_id(project))

    def contributions(self, project: str) -> Contributions:
        with self._lock:
            return dict(self._contributions.get(project_id(project), {}))

    def remove(self, project: str) -> bool:
        """Forget ``project``'s prototypes; returns whether it had any contribution."""
        with self._lock:
            self._derived.pop(project_id(project), None)
            return bool(self._contributions.pop(project_id(project), None))

    def projects(self) -> list[str]:
        with self._lock:
            return sorted(self._contributions, key=lambda p: (len(p), p))


class RedisPrototypeStore:
    """Redis mode: ``samiam:contributions:<project>`` (a hash: annotation id -> contribution JSON)
    and ``samiam:prototypes:<project>`` (the derived :meth:`Prototypes.to_json`); no expiry."""

    def __init__(self, connection: redis.Redis, capacity: int, seed: int):
        self.redis = connection
        self.capacity, self.seed = capacity, seed
        kwargs = connection.connection_pool.connection_kwargs
        self.url = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"

    @staticmethod
    def _keys(project: str) -> tuple[str, str]:
        pid = project_id(project)
        return f"{PREFIX}:contributions:{pid}", f"{PREFIX}:prototypes:{pid}"

    @redis_errors_as_unavailable
    def update(self, project: str, change: Change) -> Prototypes | None:
        """Apply ``change`` to ``project``'s contributions in one optimistic transaction (tried
        again when another process changed them in between); returns the new prototypes."""
        contributions_key, derived_key = self._keys(project)
        for _ in range(WATCH_RETRIES):
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(contributions_key)
                    before = _decoded(pipe.hgetall(contributions_key))
                    after = change(before)
                    derived = derive(after, self.capacity, self.seed)
                    pipe.multi()
                    gone = [field for field in before if field not in after]
                    if gone:
                        pipe.hdel(contributions_key, *gone)
                    changed = {k: json.dumps(v) for k, v in after.items() if before.get(k) != v}
                    if changed:
                        pipe.hset(contributions_key, mapping=changed)
                    if derived is None:
                        pipe.delete(derived_key)
                    else:
                        pipe.set(derived_key, derived.to_json())
                    pipe.execute()
                    return derived
                except redis.WatchError:
                    continue
        raise PrototypeError(f"project {project_id(project)}: its prototypes changed {WATCH_RETRIES} times "
                             "while this update was made; try again")

    @redis_errors_as_unavailable
    def get(self, project: str) -> Prototypes | None:
        stored = self.redis.get(self._keys(project)[1])
        return None if stored is None else Prototypes.from_json(stored)

    @redis_errors_as_unavailable
    def contributions(self, project: str) -> Contributions:
        return _decoded(self.redis.hgetall(self._keys(project)[0]))

    @redis_errors_as_unavailable
    def remove(self, project: str) -> bool:
        return bool(self.redis.delete(*self._keys(project)))

    @redis_errors_as_unavailable
    def projects(self) -> list[str]:
        prefix = f"{PREFIX}:contributions:"
        found = {key.decode()[len(prefix):] for key in self.redis.scan_iter(f"{prefix}*")}
        return sorted(found, key=lambda p: (len(p), p))


def _decoded(fields: Mapping[bytes, bytes]) -> Contributions:
    return {k.decode(): json.loads(v) for k, v in fields.items()}


def make_prototype_store(config: ServiceConfig, connection: redis.Redis | None = None):
    """The prototype store of ``config``'s mode: in Redis through ``connection``, else in memory."""
    naming, seed = config.settings.naming, config.settings.merging.seed
    if connection is None:
        return MemoryPrototypeStore(naming.exemplars_per_label, seed)
    return RedisPrototypeStore(connection, naming.exemplars_per_label, seed)
