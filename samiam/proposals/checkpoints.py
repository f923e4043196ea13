"""The official SAM v1 checkpoints: where they live, whether they are intact, how to fetch them.

A checkpoint is looked up as ``<model_dir>/<official file name>`` unless
:attr:`ProposalSettings.checkpoint` names a file. Its SHA-256 is checked against
:data:`OFFICIAL_CHECKPOINTS` once; the result is cached in a ``<file>.sha256-ok`` sidecar keyed
by the file's size and modification time, so that a restarted worker does not re-hash 2.5 GB.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from samiam.errors import CheckpointError, SettingsError
from samiam.settings import ProposalSettings

log = logging.getLogger(__name__)

DOWNLOAD_BASE = "https://dl.fbaipublicfiles.com/segment_anything"
CHUNK_BYTES = 1 << 20
"""Read and write files in 1 MiB chunks while hashing and downloading."""
DOWNLOAD_TIMEOUT_S = 60.0
"""Seconds without data after which a download is abandoned."""
SIDECAR_SUFFIX = ".sha256-ok"


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One checkpoint published by Meta for ``segment_anything.sam_model_registry[model_type]``."""

    model_type: str
    file_name: str
    sha256: str
    size: int
    """Bytes; a file of another size fails verification without being hashed."""

    @property
    def url(self) -> str:
        return f"{DOWNLOAD_BASE}/{self.file_name}"


OFFICIAL_CHECKPOINTS: dict[str, OfficialCheckpoint] = {
    c.model_type: c for c in (
        OfficialCheckpoint("vit_b", "sam_vit_b_01ec64.pth",
                           "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", 375_042_383),
        OfficialCheckpoint("vit_l", "sam_vit_l_0b3195.pth",
                           "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", 1_249_524_607),
        OfficialCheckpoint("vit_h", "sam_vit_h_4b8939.pth",
                           "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", 2_564_550_879),
    )
}


def official_checkpoint(model_type: str) -> OfficialCheckpoint:
    """Table entry of ``model_type``; unknown types raise :class:`SettingsError` listing the known ones."""
    try:
        return OFFICIAL_CHECKPOINTS[model_type]
    except KeyError:
        raise SettingsError(f"unknown SAM model type {model_type!r}; "
                            f"known: {', '.join(sorted(OFFICIAL_CHECKPOINTS))}") from None


def download_command(model_type: str, model_dir: str | os.PathLike) -> str:
    """The shell command that fetches the official ``model_type`` checkpoint into ``model_dir``."""
    return f"samiam weights download {model_type} --model-dir {model_dir}"


def checkpoint_path(settings: ProposalSettings) -> Path:
    """Where the checkpoint is expected: ``settings.checkpoint`` or ``<model_dir>/<official name>``."""
    if settings.checkpoint:
        return Path(settings.checkpoint).expanduser()
    return Path(settings.model_dir).expanduser() / official_checkpoint(settings.model_type).file_name


def find_checkpoint(settings: ProposalSettings) -> Path:
    """Path of an existing checkpoint file, else :class:`CheckpointError` naming the fetch command."""
    path = checkpoint_path(settings)
    if not path.is_file():
        raise CheckpointError(
            f"no SAM {settings.model_type} checkpoint at {path}; fetch it with: "
            f"{download_command(settings.model_type, settings.model_dir)}")
    return path


def ensure_checkpoint(settings: ProposalSettings) -> Path:
    """:func:`find_checkpoint`, then :func:`verify_checkpoint` unless ``settings.verify_checksum`` is off."""
    path = find_checkpoint(settings)
    if settings.verify_checksum:
        verify_checkpoint(path, settings.model_type)
    else:
        log.warning("not verifying the SHA-256 of %s (proposals.verify_checksum is off)", path)
    return path


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in :data:`CHUNK_BYTES` chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def is_verified(path: Path, model_type: str) -> bool:
    """True when the sidecar says this very file (same size and mtime) has the official hash."""
    try:
        record = json.loads(_sidecar(path).read_text())
        stat = path.stat()
    except (OSError, ValueError):
        return False
    return record == _sidecar_record(stat, official_checkpoint(model_type).sha256)


def verify_checkpoint(path: str | os.PathLike, model_type: str) -> None:
    """Check ``path`` against the official SHA-256 of ``model_type``; raise :class:`CheckpointError`.

    The first success writes the ``<file>.sha256-ok`` sidecar; later calls with the file
    unchanged return at once. A read-only model directory only costs the re-hash.
    """
    path = Path(path)
    expected = official_checkpoint(model_type)
    if is_verified(path, model_type):
        return
    stat = path.stat()
    if stat.st_size != expected.size:
        raise CheckpointError(
            f"{path} has {stat.st_size} bytes but the official {model_type} checkpoint has "
            f"{expected.size} (truncated or not a SAM {model_type} file); re-download it with: "
            f"{download_command(model_type, path.parent)}  (fine-tuned checkpoints: set "
            f"proposals.verify_checksum=false)")
    log.info("verifying SHA-256 of %s (once; the result is cached)", path)
    actual = sha256_of(path)
    if actual != expected.sha256:
        raise CheckpointError(
            f"{path} has SHA-256 {actual} but the official {model_type} checkpoint has "
            f"{expected.sha256}; re-download it with: {download_command(model_type, path.parent)}  "
            f"(fine-tuned checkpoints: set proposals.verify_checksum=false)")
    try:
        _sidecar(path).write_text(json.dumps(_sidecar_record(stat, actual)))
    except OSError as error:
        log.debug("cannot cache the verification of %s: %s", path, error)


def download_checkpoint(model_type: str, model_dir: str | os.PathLike, url: str | None = None,
                        progress: bool = True) -> Path:
    """Fetch the official ``model_type`` checkpoint into ``model_dir`` and return its path.

    Streams to ``<file>.part`` with a tqdm progress bar, hashing on the way; on a matching
    SHA-256 the part file is renamed atomically to the official name, otherwise it is deleted
    and :class:`CheckpointError` is raised. A file already present and verified is kept.
    ``url`` overrides the official address (a mirror).
    """
    from tqdm import tqdm

    entry = official_checkpoint(model_type)
    directory = Path(model_dir).expanduser()
    target = directory / entry.file_name
    url = url or entry.url
    if target.is_file():
        try:
            verify_checkpoint(target, model_type)
            log.info("%s is already present and verified", target)
            return target
        except CheckpointError as error:
            log.warning("replacing %s: %s", target, error)
    directory.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(part, "wb") as out, \
                tqdm(total=int(response.headers.get("Content-Length") or entry.size), unit="B",
                     unit_scale=True, unit_divisor=1024, desc=entry.file_name, disable=not progress) as bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as error:
        part.unlink(missing_ok=True)
        raise CheckpointError(f"cannot download {url} to {target}: {error}; download it by other means "
                              f"and place it at {target}") from None
    if digest.hexdigest() != entry.sha256:
        part.unlink(missing_ok=True)
        raise CheckpointError(f"download of {url} has SHA-256 {digest.hexdigest()}, expected "
                              f"{entry.sha256}; the file was deleted, try again")
    os.replace(part, target)
    _sidecar(target).write_text(json.dumps(_sidecar_record(target.stat(), entry.sha256)))
    return target


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _sidecar_record(stat: os.stat_result, sha256: str) -> dict:
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
