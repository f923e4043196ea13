"""Replace one benchmark's section of ``docs/benchmarks.md`` (between its HTML comment markers)."""

from __future__ import annotations

import re
from pathlib import Path


def write_section(docs: Path, name: str, title: str, text: str) -> None:
    """Put ``text`` between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``docs``; when
    the markers are missing, append them under a ``## title`` heading."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text}\n{end}"
    current = docs.read_text() if docs.exists() else "# Benchmarks\n"
    if start in current:
        current = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, current, flags=re.DOTALL)
    else:
        current = current.rstrip() + f"\n\n## {title}\n\n" + block + "\n"
    docs.write_text(current)
