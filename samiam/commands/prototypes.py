"""``samiam prototypes``: the label prototypes the service learned per Label Studio project, in
Redis (``REDIS_URL``): ``list`` them, ``show`` one project's, ``delete`` one project's (its
predictions go back to zero-shot names and model version; "Start training" in Label Studio
learns them again from all its annotations)."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("prototypes", help="list, show or delete the labels learned per project",
                                   description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="projects with learned labels, one line each")
    for name, help_text in (("show", "one project's learned labels as JSON"),
                            ("delete", "forget everything one project has learned")):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("--project", required=True, help="Label Studio project id")
    parser.set_defaults(func=run)


def summary(project: str, prototypes, contributions: dict) -> dict:
    """What ``show`` prints: the version and, per label, exemplars, crops seen and images."""
    learned = prototypes.labels if prototypes is not None else ()
    return {"project": project, "version": prototypes.version if prototypes is not None else None,
            "embedder": prototypes.embedder if prototypes is not None else None,
            "annotations": sum("prototypes" in c for c in contributions.values()),
            "deleted_annotations": sum(bool(c.get("deleted")) for c in contributions.values()),
            "labels": [{"name": label.name, "exemplars": len(label.exemplars), "seen": label.seen,
                        "images": label.images} for label in learned]}


def run(args) -> int:
    from samiam.errors import SettingsError
    from samiam.service.config import ServiceConfig
    from samiam.service.prototype_store import make_prototype_store
    from samiam.service.redis_mode import connect

    config = ServiceConfig.from_env()
    if config.embedded:
        raise SettingsError("samiam prototypes needs REDIS_URL: an embedded `samiam serve` keeps what it "
                            "learns in memory only (restart it to forget)")
    store = make_prototype_store(config, connect(config, config.redis_timeout_s))
    if args.action == "list":
        for project in store.projects():
            learned = store.get(project)
            print(f"{project}\t{learned.version if learned else '-'}\t{', '.join(learned.names) if learned else ''}")
        return 0
    if args.action == "show":
        print(json.dumps(summary(args.project, store.get(args.project), store.contributions(args.project)), indent=2))
        return 0
    removed = store.remove(args.project)
    print(f"project {args.project}: " + ("learned labels deleted" if removed else "nothing was learned"))
    return 0
