"""Checkpoint lookup, SHA-256 verification (and its cache), downloads from a local HTTP server."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import http.server
import logging
import os
import threading

import pytest

from samiam.commands import weights
from samiam.errors import CheckpointError, SettingsError
from samiam.proposals import checkpoints
from samiam.settings import ProposalSettings

PAYLOAD = b"not really a checkpoint, " * 2000  # 50 kB, several 1 MiB-chunk reads are not needed


def fake_entry(monkeypatch, model_type: str, payload: bytes, sha256: str | None = None):
    """Make the table's ``model_type`` entry describe ``payload`` (or carry a wrong ``sha256``)."""
    entry = dataclasses.replace(checkpoints.OFFICIAL_CHECKPOINTS[model_type],
                                sha256=sha256 or hashlib.sha256(payload).hexdigest(), size=len(payload))
    monkeypatch.setitem(checkpoints.OFFICIAL_CHECKPOINTS, model_type, entry)
    return entry


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving ``<tmp>/served``; yields (base URL, folder, request log)."""
    served = tmp_path / "served"
    served.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=served))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served, requests
    httpd.shutdown()
    httpd.server_close()


def test_official_table_matches_the_published_names_and_urls():
    vit_h = checkpoints.OFFICIAL_CHECKPOINTS["vit_h"]
    assert vit_h.url == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"
    assert checkpoints.OFFICIAL_CHECKPOINTS["vit_b"].size == 375_042_383
    assert all(len(c.sha256) == 64 and int(c.sha256, 16) for c in checkpoints.OFFICIAL_CHECKPOINTS.values())


def test_missing_checkpoint_names_the_path_and_the_download_command(tmp_path):
    settings = ProposalSettings(model_type="vit_l", model_dir=str(tmp_path))
    with pytest.raises(CheckpointError) as caught:
        checkpoints.find_checkpoint(settings)
    message = str(caught.value)
    assert str(tmp_path / "sam_vit_l_0b3195.pth") in message
    assert f"samiam weights download vit_l --model-dir {tmp_path}" in message


def test_explicit_checkpoint_wins_over_the_model_dir(tmp_path):
    explicit = tmp_path / "fine-tuned.pth"
    explicit.write_bytes(PAYLOAD)
    settings = ProposalSettings(checkpoint=str(explicit), model_dir=str(tmp_path / "elsewhere"))
    assert checkpoints.find_checkpoint(settings) == explicit


def test_unknown_model_type_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError, match="vit_b, vit_h, vit_l"):
        checkpoints.checkpoint_path(ProposalSettings(model_type="vit_xl", model_dir=str(tmp_path)))


def test_verification_passes_is_cached_and_notices_a_changed_file(tmp_path, monkeypatch):
    path = tmp_path / "sam_vit_b_01ec64.pth"
    path.write_bytes(PAYLOAD)
    fake_entry(monkeypatch, "vit_b", PAYLOAD)
    checkpoints.verify_checkpoint(path, "vit_b")
    assert (tmp_path / "sam_vit_b_01ec64.pth.sha256-ok").is_file()

    def no_hashing(_):
        raise AssertionError("hashed again although the file did not change")

    monkeypatch.setattr(checkpoints, "sha256_of", no_hashing)
    checkpoints.verify_checkpoint(path, "vit_b")  # served from the sidecar
    monkeypatch.undo()

    fake_entry(monkeypatch, "vit_b", PAYLOAD)
    tampered = PAYLOAD[:-1] + b"!"
    path.write_bytes(tampered)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(CheckpointError) as caught:
        checkpoints.verify_checkpoint(path, "vit_b")
    message = str(caught.value)
    assert hashlib.sha256(tampered).hexdigest() in message
    assert hashlib.sha256(PAYLOAD).hexdigest() in message
    assert "samiam weights download vit_b" in message


def test_wrong_size_fails_without_hashing(tmp_path, monkeypatch):
    path = tmp_path / "sam_vit_b_01ec64.pth"
    path.write_bytes(PAYLOAD[:100])
    fake_entry(monkeypatch, "vit_b", PAYLOAD)
    monkeypatch.setattr(checkpoints, "sha256_of", lambda _: pytest.fail("hashed a file of the wrong size"))
    with pytest.raises(CheckpointError, match=f"100 bytes .* {len(PAYLOAD)}"):
        checkpoints.verify_checkpoint(path, "vit_b")


def test_verification_can_be_switched_off_with_a_warning(tmp_path, caplog):
    path = tmp_path / "sam_vit_b_01ec64.pth"
    path.write_bytes(PAYLOAD)  # not the official hash
    settings = ProposalSettings(model_type="vit_b", model_dir=str(tmp_path), verify_checksum=False)
    with caplog.at_level(logging.WARNING):
        assert checkpoints.ensure_checkpoint(settings) == path
    assert "not verifying" in caplog.text
    with pytest.raises(CheckpointError, match="SHA-256|bytes"):
        checkpoints.ensure_checkpoint(dataclasses.replace(settings, verify_checksum=True))


def test_download_verifies_and_renames(server, tmp_path, monkeypatch):
    base, served, requests = server
    (served / "model.bin").write_bytes(PAYLOAD)
    fake_entry(monkeypatch, "vit_b", PAYLOAD)
    target = checkpoints.download_checkpoint("vit_b", tmp_path / "models", url=f"{base}/model.bin",
                                             progress=False)
    assert target == tmp_path / "models" / "sam_vit_b_01ec64.pth"
    assert target.read_bytes() == PAYLOAD
    assert not (tmp_path / "models" / "sam_vit_b_01ec64.pth.part").exists()
    assert checkpoints.is_verified(target, "vit_b")
    assert requests == ["/model.bin"]
    # Present and verified: nothing is fetched again.
    checkpoints.download_checkpoint("vit_b", tmp_path / "models", url=f"{base}/model.bin", progress=False)
    assert requests == ["/model.bin"]


def test_download_with_a_wrong_hash_deletes_the_part_file(server, tmp_path, monkeypatch):
    base, served, _ = server
    (served / "model.bin").write_bytes(PAYLOAD)
    fake_entry(monkeypatch, "vit_b", PAYLOAD, sha256="0" * 64)
    models = tmp_path / "models"
    with pytest.raises(CheckpointError, match=hashlib.sha256(PAYLOAD).hexdigest()):
        checkpoints.download_checkpoint("vit_b", models, url=f"{base}/model.bin", progress=False)
    assert list(models.iterdir()) == []


def test_download_of_a_missing_file_is_a_checkpoint_error(server, tmp_path, monkeypatch):
    base, _, _ = server
    fake_entry(monkeypatch, "vit_b", PAYLOAD)
    models = tmp_path / "models"
    with pytest.raises(CheckpointError, match="cannot download .*404"):
        checkpoints.download_checkpoint("vit_b", models, url=f"{base}/absent.bin", progress=False)
    assert list(models.iterdir()) == []


def run_weights(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    weights.register(parser.add_subparsers(dest="command"))
    return weights.run(parser.parse_args(["weights", *argv]))


def test_weights_command_downloads_then_lists(server, tmp_path, monkeypatch, capsys):
    base, served, _ = server
    (served / "model.bin").write_bytes(PAYLOAD)
    fake_entry(monkeypatch, "vit_b", PAYLOAD)
    models = tmp_path / "models"
    assert run_weights("download", "vit_b", "--model-dir", str(models), "--url", f"{base}/model.bin") == 0
    assert capsys.readouterr().out.strip() == str(models / "sam_vit_b_01ec64.pth")

    (models / "sam_vit_h_4b8939.pth").write_bytes(b"partial")
    assert run_weights("list", "--model-dir", str(models)) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "present, verified" in lines["vit_b"]
    assert "missing" in lines["vit_l"]
    assert "not verified" in lines["vit_h"]
    assert run_weights("list", "--verify", "--model-dir", str(models)) == 0
    assert "BAD" in capsys.readouterr().out
