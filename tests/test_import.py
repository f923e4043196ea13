"""``samiam import``: microscope fixtures and samples to PNG views, full-range TIFFs and tasks.json;
the Label Studio project set-up against the fake Label Studio, with the real backend (embedded
mode, classical proposer) segmenting the full-range originals."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from urllib.parse import quote, unquote

import cv2
import numpy as np
import pytest
import requests
import tifffile
from fake_label_studio import TOKEN, FakeLabelStudio
from service_processes import wait_until
from shared_data import formats_dir, velox_files
from werkzeug.serving import make_server

from samiam.cli import main
from samiam.errors import ImageSizeMismatchError, RequestError
from samiam.io import load_micrograph
from samiam.labelstudio import projects
from samiam.labelstudio.client import LabelStudioAccess
from samiam.labelstudio.config import brush_label_config, parse_label_config
from samiam.labelstudio.model import SamiamModel
from samiam.labelstudio.request import TaskRequest
from samiam.labelstudio.results import materials_from_results
from samiam.labelstudio.tasks import segmentation_url
from samiam.service import ServiceConfig, create_app
from samiam.settings import Settings

pytest.importorskip("rsciio", reason="RosettaSciIO (pip install 'samiam[formats]') reads microscope files")

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
LABELS = "SrTiO3,Ge,Pt/C"


def read_tasks(out: Path) -> dict[str, dict]:
    """tasks.json as {image name: task data}."""
    tasks = json.loads((out / "tasks.json").read_text())
    assert all(set(task) == {"data"} for task in tasks)
    return {task["data"]["image"].rsplit("/", 1)[-1]: task["data"] for task in tasks}


def assert_calibration(pixel_size, pixel_unit, size, unit) -> None:
    assert pixel_unit == unit
    assert pixel_size is None if size is None else pixel_size == pytest.approx(size, rel=1e-4)


def test_import_fixtures_and_samples(tmp_path, capsys):
    folder = tmp_path / "lab"
    shutil.copytree(formats_dir(), folder)
    velox_files(folder)
    for sample in SAMPLES.glob("*.*[fg]"):  # the .jpg and the .tiff
        shutil.copy(sample, folder)
    out = tmp_path / "project"
    # The MRC's frames are constant; the 2x2 DM4 and the 3x3 frames of the EMD stack are too small.
    assert main(["import", str(folder), "--out", str(out)]) == 1
    tasks = read_tasks(out)
    expected = {  # NAME -> source file, pixel size, unit
        "test_STEM_image": ("test_STEM_image.dm3", 0.24854, "nm"),
        "128x128-TEM_search": ("128x128-TEM_search.emi", 5.26121, "nm"),
        "Test SI 16x16 215 kx": ("Test SI 16x16 215 kx.emd", 3.59925, "nm"),
        "Test SI 16x16 ReducedData 215 kx": ("Test SI 16x16 ReducedData 215 kx.emd", 3.59925, "nm"),
        "lsfo_lattice_haadf": ("lsfo_lattice_haadf.jpg", None, None),
        "moo3_nanoparticles_16bit": ("moo3_nanoparticles_16bit.tiff", None, None),
    }
    assert sorted(tasks) == sorted(f"{quote(name)}.png" for name in expected)
    for name, (source, size, unit) in expected.items():
        data = tasks[f"{quote(name)}.png"]
        assert data["image"] == f"/data/local-files/?d=project/{quote(name)}.png"
        assert data["original"] == f"/data/local-files/?d=project/{quote(name)}.tif"
        assert data["source"] == str(folder / source)
        assert_calibration(data["pixel_size"], data["pixel_unit"], size, unit)
        view = cv2.imread(str(out / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        original = tifffile.imread(out / f"{name}.tif")
        assert view.dtype == np.uint8 and view.ndim == 2 and original.dtype == np.float32
        assert view.shape == original.shape == (data["height"], data["width"])  # masks on the original fit the view
        frame = int(name[-3:]) if ".frame" in name else None
        source_raw = tifffile.imread(folder / source) if source.endswith(".tiff") else None
        reread = load_micrograph(out / f"{name}.tif")  # the calibration travels with the TIFF
        assert_calibration(reread.pixel_size, reread.pixel_unit, size, unit)
        if source_raw is not None:
            np.testing.assert_array_equal(original, source_raw.astype(np.float32))
        elif frame is None and not source.endswith(".jpg"):
            np.testing.assert_array_equal(original, load_micrograph(folder / source).raw.astype(np.float32))
    raw = tifffile.imread(SAMPLES / "moo3_nanoparticles_16bit.tiff").astype(np.float64)
    low, high = np.percentile(raw, (0.5, 99.5))
    stretched = np.rint(np.clip((raw - low) / (high - low), 0, 1) * 255)
    view = cv2.imread(str(out / "moo3_nanoparticles_16bit.png"), cv2.IMREAD_UNCHANGED)
    assert np.abs(view - stretched).max() <= 1  # the 0.5-99.5 % stretch (float32 rounding aside)
    printed = capsys.readouterr()
    assert "imported 6 of 9 files as 6 tasks" in printed.out
    assert "3 failed: 20241021_00405_movie.mrc, fei_example_tem_stack.emd, test-1.dm4" in printed.out
    assert "test-1.dm4 (test): the image is 2x2 px; samiam segments images of at least 16 px" in printed.out


def test_url_prefix_and_document_root(tmp_path, capsys):
    folder = tmp_path / "lab"
    folder.mkdir()
    shutil.copy(formats_dir() / "test_STEM_image.dm3", folder / "a b.dm3")
    out = tmp_path / "served" / "em"
    assert main(["import", str(folder), "--out", str(out), "--url-prefix", "https://files.example/em/"]) == 0
    assert read_tasks(out)["a%20b.png"]["original"] == "https://files.example/em/a%20b.tif"
    assert main(["import", str(folder), "--out", str(out), "--document-root", str(tmp_path)]) == 0
    assert read_tasks(out)["a%20b.png"]["image"] == "/data/local-files/?d=served/em/a%20b.png"
    assert main(["import", str(folder), "--out", str(out), "--document-root", str(folder)]) == 2
    assert "is not inside the document root" in capsys.readouterr().err


def test_two_files_with_one_name_are_refused(tmp_path, capsys):
    folder = tmp_path / "lab"
    folder.mkdir()
    shutil.copy(formats_dir() / "test_STEM_image.dm3", folder / "x.dm3")
    shutil.copy(SAMPLES / "lsfo_lattice_haadf.jpg", folder / "x.jpg")
    assert main(["import", str(folder), "--out", str(tmp_path / "out")]) == 1
    assert "x.jpg and x.dm3 would both be written as x.png" in capsys.readouterr().out
    assert len(read_tasks(tmp_path / "out")) == 1


@pytest.mark.parametrize("argv, message", [
    (["--labels", "a"], "--labels need --label-studio URL"),
    (["--label-studio", "http://127.0.0.1:9"], "--label-studio needs --labels"),
    (["--label-studio", "http://127.0.0.1:9", "--labels", "a,b"], "LABEL_STUDIO_API_KEY"),
])
def test_label_studio_arguments_are_checked_first(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    assert main(["import", str(tmp_path), "--out", str(tmp_path / "out"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_brush_label_config_escapes_and_checks_labels():
    config = brush_label_config(["SrTiO3", 'a"<b>&'])
    assert parse_label_config(config).labels == ("SrTiO3", 'a"<b>&')
    for bad in ([], ["a", " "], ["a", "a"]):
        with pytest.raises(Exception, match="labels must"):
            brush_label_config(bad)


def test_the_backend_segments_the_original_of_a_task_that_declares_the_shown_size():
    sized = {"image": "/data/upload/1/x.png", "original": "/data/upload/1/x.tif", "height": 68, "width": 70}
    assert segmentation_url({"data": sized}, "image") == ("/data/upload/1/x.tif", (68, 70))
    unsized = {"image": "/data/upload/1/x.png", "original": "/data/upload/1/x.tif"}
    assert segmentation_url({"data": unsized}, "image") == ("/data/upload/1/x.png", None)  # the PNG itself
    assert segmentation_url({"data": {"image": "/u.png", "original": "", "height": 1, "width": 1}}, "image") \
        == ("/u.png", None)
    assert segmentation_url({"data": {"image": "/u.png", "width": "wide"}}, "image") == ("/u.png", None)


def test_the_declared_size_travels_with_the_job():
    body = {"label_config": brush_label_config(["SrTiO3"]), "tasks": [
        {"id": 1, "data": {"image": "/x.png", "original": "/x.tif", "height": 68, "width": 70}},
        {"id": 2, "data": {"image": "/y.png"}}]}
    sized, plain = SamiamModel(Settings(), "v1").requests(body, lambda project: {})
    assert [TaskRequest.from_json(r.to_json()) for r in (sized, plain)] == [sized, plain]
    assert (sized.image_url, sized.image_size, plain.image_url, plain.image_size) == ("/x.tif", (68, 70), "/y.png", None)
    sized.check_size((68, 70))
    plain.check_size((5, 5))
    with pytest.raises(ImageSizeMismatchError, match="task 1: its original '/x.tif' is 71x68 pixels but the image "
                                                     "annotators see is 70x68"):
        sized.check_size((68, 71))


@pytest.mark.parametrize("size", [{"height": 68}, {"height": 68, "width": "70"}, {"height": 0, "width": 70},
                                  {"height": True, "width": 70}, {"height": 68.5, "width": 70}])
def test_a_malformed_declared_size_is_a_named_error(size):
    task = {"id": 7, "data": {"image": "/x.png", "original": "/x.tif", **size}}
    with pytest.raises(RequestError, match="task 7: data 'height' and 'width' must both be whole numbers"):
        segmentation_url(task, "image")


@pytest.fixture
def backend():
    """The samiam backend (embedded mode, classical proposer) on a free loopback port."""
    app = create_app(ServiceConfig(model_version="test-v1", settings=Settings().replace(
        {"proposals.proposer": "classical"}), writeback_retry_intervals_s=(0,)))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    app.extensions["samiam"]["dispatcher"].shutdown()


@pytest.fixture
def lab(tmp_path):
    folder = tmp_path / "lab"
    folder.mkdir()
    for name in ("test_STEM_image.dm3", "128x128-TEM_search.emi", "128x128-TEM_search_1.ser"):
        shutil.copy(formats_dir() / name, folder)
    return folder


def test_project_with_local_files_and_predictions_from_the_originals(tmp_path, lab, backend, monkeypatch, capsys):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    studio = FakeLabelStudio(document_root=tmp_path)
    try:
        out = tmp_path / "em"
        assert main(["import", str(lab), "--out", str(out), "--label-studio", studio.url, "--labels", LABELS,
                     "--title", "EM", "--backend", backend, "--predict"]) == 0
        [project] = studio.projects.values()
        assert project["title"] == "EM" and parse_label_config(project["label_config"]).labels == tuple(
            LABELS.split(","))
        assert [Path(s["path"]) for s in studio.storages] == [out.resolve()]
        imported = [task["data"] for task in json.loads((out / "tasks.json").read_text())]
        assert [task["data"] for task in studio.tasks.values()] == imported and len(imported) == 2
        assert [b["url"] for b in studio.ml_backends] == [backend]
        [call] = studio.predict_calls
        assert len(call["tasks"]) == 2
        originals = {task["data"]["original"] for task in studio.tasks.values()}
        assert set(studio.downloaded) == originals  # the full-range TIFFs, never the PNG views
        assert studio.predictions == []  # answered within the deadline: no second copy written back
        for task in studio.tasks.values():
            [prediction] = task["predictions"]
            assert prediction["model_version"] == "test-v1"
            view = cv2.imread(str(out / unquote(task["data"]["image"].rsplit("/", 1)[-1])), cv2.IMREAD_UNCHANGED)
            results = prediction["result"]
            assert results and all((r["original_height"], r["original_width"]) == view.shape for r in results)
            masks, labels = materials_from_results(results)
            assert masks.shape[1:] == view.shape and set(labels) <= set(LABELS.split(","))
    finally:
        studio.close()
    assert "Label Studio project 1" in capsys.readouterr().out


def test_upload_sends_one_form_field_per_file(tmp_path, lab, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    studio = FakeLabelStudio()
    try:
        out = tmp_path / "em"
        assert main(["import", str(lab), "--out", str(out), "--label-studio", studio.url, "--labels", LABELS,
                     "--upload"]) == 0
        assert len(studio.tasks) == 2  # one field name for all files would make one task
        for task in studio.tasks.values():
            url = task["data"]["image"]
            assert url.startswith("/data/upload/1/")
            name = url.split("-", 1)[1]
            assert studio.files[url] == ((out / name).read_bytes(), "image/png")
    finally:
        studio.close()


def test_an_unreachable_backend_is_a_named_error(tmp_path, lab, monkeypatch, capsys):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    studio = FakeLabelStudio(document_root=tmp_path)
    try:
        assert main(["import", str(lab), "--out", str(tmp_path / "em"), "--label-studio", studio.url,
                     "--labels", LABELS, "--backend", "http://127.0.0.1:9"]) == 2
    finally:
        studio.close()
    error = capsys.readouterr().err
    assert "refused to connect the ML backend http://127.0.0.1:9" in error and "health check failed" in error


def test_an_original_of_another_size_than_the_view_fails_its_task(tmp_path, lab, backend, monkeypatch):
    """One task's original is swapped for a cropped one: that task fails with the named error and
    gets no prediction. Another task without a declared size is segmented from its PNG."""
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    studio = FakeLabelStudio(document_root=tmp_path)
    try:
        out = tmp_path / "em"
        assert main(["import", str(lab), "--out", str(out), "--label-studio", studio.url, "--labels", LABELS,
                     "--backend", backend]) == 0
        by_name = {unquote(t["data"]["image"].rsplit("/", 1)[-1]): t for t in studio.tasks.values()}
        cropped, unsized = by_name["test_STEM_image.png"], by_name["128x128-TEM_search.png"]
        original = out / "test_STEM_image.tif"
        tifffile.imwrite(original, tifffile.imread(original)[:, :-3])  # 68x65, the PNG stays 68x68
        del unsized["data"]["height"], unsized["data"]["width"]
        projects.request_predictions(LabelStudioAccess(studio.url, TOKEN), 1)
        # Not one result per task in the answer, so Label Studio stores none; the backend writes back its one.
        [written] = wait_until(lambda: studio.predictions, 30, "the write-back of the unsized task's prediction")
        assert written["task"] == unsized["id"] and cropped["predictions"] == []
        assert set(studio.downloaded) == {cropped["data"]["original"], unsized["data"]["image"]}
    finally:
        studio.close()
    [failure] = [t for t in requests.get(f"{backend}/jobs?project=1", timeout=5).json()["tasks"]
                 if t["state"] == "failed"]
    assert failure["task"] == cropped["id"]
    assert "is 65x68 pixels but the image annotators see is 68x68" in failure["reason"]


def test_smart_adds_keypoint_and_rectangle_tools_with_the_labels():
    config = brush_label_config(["SrTiO3", "Ge"], smart=True)
    assert parse_label_config(config).labels == ("SrTiO3", "Ge")  # the brush is still what samiam fills
    from label_studio_sdk.label_interface import LabelInterface
    tools = {control.tag: control for control in LabelInterface(config).controls}
    assert set(tools) == {"BrushLabels", "KeyPointLabels", "RectangleLabels"}
    for tag in ("KeyPointLabels", "RectangleLabels"):
        assert tools[tag].attr.get("smart") == "true" and tools[tag].labels == ["SrTiO3", "Ge"]
        assert tools[tag].to_name == ["image"]
    assert "smart" not in brush_label_config(["SrTiO3", "Ge"])


def test_a_cached_prediction_is_checked_against_the_declared_size(tmp_path, lab, backend, monkeypatch):
    """A second task naming the same original, declaring a wrong size, is answered from the cache
    (same bytes, same settings): the check runs there too."""
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    studio = FakeLabelStudio(document_root=tmp_path)
    try:
        assert main(["import", str(lab), "--out", str(tmp_path / "em"), "--label-studio", studio.url,
                     "--labels", LABELS, "--backend", backend, "--predict"]) == 0
        good = next(t for t in studio.tasks.values() if t["data"]["image"].endswith("test_STEM_image.png"))
        access = LabelStudioAccess(studio.url, TOKEN)
        projects.import_tasks(access, 1, [{"data": {**good["data"], "width": 67}}])
        projects.request_predictions(access, 1)
        hits = {line.split()[0]: line.split()[1] for line in requests.get(f"{backend}/metrics", timeout=5).text
                .splitlines() if not line.startswith("#")}["samiam_cache_hits_total"]
    finally:
        studio.close()
    [failure] = [t for t in requests.get(f"{backend}/jobs?project=1", timeout=5).json()["tasks"]
                 if t["state"] == "failed"]
    assert failure["task"] == max(studio.tasks) and float(hits) == 1
    assert "is 68x68 pixels but the image annotators see is 67x68" in failure["reason"]


def test_a_skipped_file_is_named_once_and_help_shows_plain_percent(tmp_path, capsys):
    folder = tmp_path / "lab"
    folder.mkdir()
    flat = folder / "flat.tif"
    tifffile.imwrite(flat, np.full((64, 64), 7, np.uint16))

    main(["import", str(folder), "--out", str(tmp_path / "out")])

    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("skipped")]
    assert len(lines) == 1 and lines[0].count(str(flat)) == 1
    with pytest.raises(SystemExit):
        main(["import", "--help"])
    assert "%%" not in capsys.readouterr().out
