"""Cloud-storage tasks (``s3://``, ``gs://``, ``azure-blob://``) and Label Studio storage paths.

A real S3-compatible server (moto's server mode) holds the micrographs; it sits behind a
recording *storage host* (a loopback server that forwards every request to it, Host header kept,
and records what it received), which is where the presigned URLs point. The fake Label Studio
presigns like Label Studio 1.23 (``/tasks/<id>/presign/?fileuri=<base64>`` -> 303 to the
presigned URL, or the bytes themselves when presign is off). The tests check that the image
arrives, that the key goes to Label Studio and never to the storage host, and that hostile URIs
and presign redirects are refused before any connection (a canary counts connections).
"""

from __future__ import annotations

import base64

import pytest
from fake_label_studio import TOKEN, CloudStorage, FakeLabelStudio, task, two_texture_png
from loopback_http import TINY_PNG, RawServer, RecordingServer
from moto_s3 import MotoS3, StorageHost, s3_client
from service_helpers import post_predict, service_config

from samiam.errors import ImageFetchError
from samiam.labelstudio.client import LabelStudioAccess
from samiam.labelstudio.storage import fetch_task_image
from samiam.service import create_app

BUCKET = "micrographs"
OBJECTS = {"em.png": TINY_PNG, "scene.png": two_texture_png(128, 128)}


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """moto's S3 server with :data:`OBJECTS` in :data:`BUCKET`."""
    server = MotoS3(tmp_path_factory.mktemp("moto") / "moto.log").start()
    try:
        server.put(BUCKET, OBJECTS)
        yield server
    finally:
        server.stop()


@pytest.fixture
def storage(moto):
    server = StorageHost(moto)
    yield server
    server.close()


@pytest.fixture
def ls():
    server = FakeLabelStudio()
    yield server
    server.close()


def _object_key(uri: str) -> str:
    """``<scheme>://<bucket>/<key>`` -> ``<key>`` (every scheme's bucket stands for the S3 one)."""
    return uri.split("://", 1)[1].split("/", 1)[1]


def _connect(ls: FakeLabelStudio, storage: StorageHost, scheme: str = "s3", presign: bool = True) -> None:
    """Give ``ls`` a ``scheme`` storage of :data:`BUCKET` presigning for ``storage`` (moto behind it)."""
    presigner = s3_client(storage.url)  # signs for the storage host's address, as Label Studio for its endpoint
    direct = s3_client(storage.moto.url)

    def presigned_url(uri: str) -> str:
        return presigner.generate_presigned_url("get_object", ExpiresIn=60,
                                                Params={"Bucket": BUCKET, "Key": _object_key(uri)})

    def read(uri: str) -> tuple[bytes, str]:
        return direct.get_object(Bucket=BUCKET, Key=_object_key(uri))["Body"].read(), "image/png"

    ls.cloud_storages.append(CloudStorage(f"{scheme}://{BUCKET}/", presigned_url, read, presign))


def _access(ls, storage, **changes) -> LabelStudioAccess:
    return LabelStudioAccess(**{"url": ls.url, "api_key": TOKEN, "timeout_s": 5,
                                "storage_hosts": (f"127.0.0.1:{storage.port}",), **changes})


def _presign_path(task_id: int, uri: str) -> str:
    return f"/tasks/{task_id}/presign/?fileuri={base64.urlsafe_b64encode(uri.encode()).decode()}"


def _assert_no_key_at(server: RecordingServer) -> None:
    for _, path, headers, _ in server.requests:
        assert "Authorization" not in headers
        assert TOKEN not in path and all(TOKEN not in value for value in headers.values())


# -- what works -----------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["s3", "gs", "azure-blob"])
def test_cloud_uri_is_presigned_by_label_studio_and_read_from_the_storage_host_without_the_key(
        scheme, ls, storage):
    _connect(ls, storage, scheme)
    uri = f"{scheme}://{BUCKET}/em.png"
    task_id = ls.add_task(1, {"image": uri})["id"]
    assert fetch_task_image(uri, task_id, _access(ls, storage)) == TINY_PNG
    assert ls.downloaded == [_presign_path(task_id, uri)]  # the fake answers only with the key
    assert [(method, path.split("?")[0]) for method, path, _, _ in storage.requests] == [("GET", f"/{BUCKET}/em.png")]
    assert "X-Amz-Signature=" in storage.requests[0][1]
    _assert_no_key_at(storage)


def test_storage_without_presign_is_streamed_by_label_studio(ls, storage):
    _connect(ls, storage, presign=False)
    uri = f"s3://{BUCKET}/em.png"
    assert fetch_task_image(uri, ls.add_task(1, {"image": uri})["id"], _access(ls, storage)) == TINY_PNG
    assert storage.requests == []


def test_label_studio_storage_paths_are_fetched_from_label_studio(ls, storage):
    _connect(ls, storage)
    ls.files["/storage-data/uploaded/?filepath=upload/1/em.png"] = (TINY_PNG, "image/png")
    access = _access(ls, storage)
    assert fetch_task_image("/storage-data/uploaded/?filepath=upload/1/em.png", 1, access) == TINY_PNG
    task_id = ls.add_task(1, {"image": "s3://ignored"})["id"]
    presign_path = _presign_path(task_id, f"s3://{BUCKET}/em.png")
    assert fetch_task_image(presign_path, task_id, access) == TINY_PNG  # a presign URL as task data
    assert fetch_task_image(ls.url + presign_path, task_id, access) == TINY_PNG
    assert len(storage.requests) == 2
    _assert_no_key_at(storage)


def test_plain_urls_still_go_through_the_image_fetcher(ls, storage):
    assert fetch_task_image(ls.add_file("a.png", TINY_PNG), 1, _access(ls, storage)) == TINY_PNG


@pytest.mark.parametrize("uri, task_known", [(f"s3://{BUCKET}/missing.png", True), ("s3://other-bucket/em.png", True),
                                             (f"s3://{BUCKET}/em.png", False)])
def test_what_label_studio_cannot_presign_is_a_named_error(uri, task_known, ls, storage):
    _connect(ls, storage)
    task_id = ls.add_task(1, {"image": uri})["id"] if task_known else 999
    with pytest.raises(ImageFetchError) as error:
        fetch_task_image(uri, task_id, _access(ls, storage))
    assert repr(uri) in str(error.value) and "HTTP 404 Not Found" in str(error.value)


def test_an_unlisted_storage_host_is_named_with_the_setting_and_never_contacted(ls, storage):
    _connect(ls, storage)
    uri = f"s3://{BUCKET}/em.png"
    with pytest.raises(ImageFetchError) as error:
        fetch_task_image(uri, ls.add_task(1, {"image": uri})["id"], _access(ls, storage, storage_hosts=()))
    assert f"127.0.0.1:{storage.port}" in str(error.value) and "SAMIAM_STORAGE_HOSTS" in str(error.value)
    assert "X-Amz" not in str(error.value)  # the presigned URL's path and query stay out of reasons
    assert storage.requests == []


def test_a_storage_host_is_reached_only_through_label_studio(ls, storage):
    presigned = s3_client(storage.url).generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "em.png"})
    with pytest.raises(ImageFetchError, match="neither Label Studio .* nor an allowed image host"):
        fetch_task_image(presigned, 1, _access(ls, storage))
    assert storage.requests == []


def test_a_cloud_task_is_segmented_by_the_service(ls, storage):
    _connect(ls, storage)
    uri = f"s3://{BUCKET}/scene.png"
    task_id = ls.add_task(1, {"image": uri})["id"]
    app = create_app(service_config(None, ls, storage_hosts=(f"127.0.0.1:{storage.port}",)))
    try:
        answer = post_predict(app.test_client(), [task(task_id, uri)])
    finally:
        app.extensions["samiam"]["dispatcher"].shutdown()
    assert answer.status_code == 200
    prediction = answer.get_json()["results"][0]
    assert prediction["result"], prediction
    assert (prediction["result"][0]["original_height"], prediction["result"][0]["original_width"]) == (128, 128)
    assert len(storage.requests) == 1
    _assert_no_key_at(storage)


# -- what is refused ------------------------------------------------------------------------

def _refused(url: str, task_id: int, access: LabelStudioAccess, canary: RawServer) -> str:
    seen = canary.connections
    with pytest.raises(ImageFetchError) as error:
        fetch_task_image(url, task_id, access)
    assert canary.settle() == seen, f"{url!r} reached the canary"
    message = str(error.value)
    assert repr(url) in message and TOKEN not in message
    return message


HOSTILE_URIS = [
    "s3://user:secret@micrographs/em.png",
    "s3://micrographs:443/em.png",
    "s3://[::1]/em.png",
    "s3://micro%67raphs/em.png",
    "s3://micrographs",
    "s3://micrographs/",
    "s3:///em.png",
    "s3:micrographs/em.png",
    "S3://micrographs/em.png",
    "gs:\\\\micrographs\\em.png",
    "azure-blob:/micrographs/em.png",
    "s3://micrographs/em.png\x00",
    "s3://micrographs/em.png\r\nX-Injected: 1",
    "s3://micrographs/" + "k" * 5000,
    "/storage-data/../api/tasks/1",
    "/storage-data/%2e%2E/api/tasks/1",
    "/storage-data/uploaded/./../../api/projects/",
    "/tasks/1/presign/../../api/tasks/1?x=1",
]


@pytest.mark.parametrize("uri", HOSTILE_URIS)
def test_hostile_task_uri_is_refused_before_any_connection(uri, canary):
    access = LabelStudioAccess(url=f"http://127.0.0.1:{canary.port}", api_key=TOKEN, timeout_s=5,
                               storage_hosts=(f"127.0.0.1:{canary.port}",))
    assert "refused" in _refused(uri, 1, access, canary)


class Hop(RecordingServer):
    """A listed storage host that redirects on: ``/hop`` -> 302 to ``location``."""

    location = b""

    def route(self, h, method, body):
        return self.send_redirect(h, self.location)


# Label Studio's presign answers 303 to these ({C}: the canary's port, {S}: the listed storage host's)
HOSTILE_PRESIGNS = [
    "http://127.0.0.1:{C}/micrographs/em.png?X-Amz-Signature=0",
    "http://localhost:{S}/micrographs/em.png",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://user:secret@127.0.0.1:{S}/micrographs/em.png",
    "http://127.0.0.1:{S}@127.0.0.1:{C}/micrographs/em.png",
    "http://127.0.0.1:{C}#@127.0.0.1:{S}/micrographs/em.png",
    "http://2130706433:{C}/micrographs/em.png",
    "http://[::ffff:127.0.0.1]:{C}/micrographs/em.png",
    "http://127.0.0.1:{S}:{C}/micrographs/em.png",
    "//127.0.0.1:{C}/micrographs/em.png",
    "file:///etc/passwd",
    "gopher://127.0.0.1:{C}/_GET%20/",
    "http://127.0.0.1:{S}/hop",  # the listed storage host redirects on to the canary
]


@pytest.mark.parametrize("location", HOSTILE_PRESIGNS)
def test_hostile_presign_redirect_is_refused_before_connecting_and_never_carries_the_key(location, ls, canary):
    hop = Hop()
    try:
        hop.location = f"http://127.0.0.1:{canary.port}/micrographs/em.png".encode()
        target = location.format(C=canary.port, S=hop.port)
        ls.cloud_storages.append(CloudStorage(f"s3://{BUCKET}/", lambda uri: target, lambda uri: (b"", ""), True))
        uri = f"s3://{BUCKET}/em.png"
        access = LabelStudioAccess(url=ls.url, api_key=TOKEN, timeout_s=5, storage_hosts=(f"127.0.0.1:{hop.port}",))
        message = _refused(uri, ls.add_task(1, {"image": uri})["id"], access, canary)
        assert "redirect" in message and "X-Amz" not in message
        assert all(path == "/hop" for _, path, _, _ in hop.requests)
        _assert_no_key_at(hop)
    finally:
        hop.close()
