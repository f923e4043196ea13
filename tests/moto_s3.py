"""A real S3-compatible server for tests: moto's ``moto_server`` on a free loopback port,
stopped by PID; and :class:`StorageHost`, a recording storage host in front of it."""

from __future__ import annotations

import http.client
import subprocess
import sys
from pathlib import Path

import boto3
from botocore.config import Config
from label_studio import free_port, stop, wait_for
from loopback_http import RecordingServer

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
"""Installed with the ``test`` extra (``moto[server]``)."""
AWS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
"""Credentials and region moto accepts (any); also what a Label Studio S3 storage is given."""


def s3_client(endpoint: str):
    """A boto3 S3 client for ``endpoint`` (path-style URLs, SigV4, as Label Studio's)."""
    return boto3.client("s3", endpoint_url=endpoint,
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}), **AWS)


class MotoS3:
    """``moto_server`` on 127.0.0.1; :meth:`start` waits until it answers."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> MotoS3:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(self.url + "/moto-api/", 60, self.process)
        except Exception:
            self.stop()
            raise
        return self

    def put(self, bucket: str, objects: dict[str, bytes]) -> None:
        """Create ``bucket`` holding ``objects`` (key -> bytes)."""
        s3 = s3_client(self.url)
        s3.create_bucket(Bucket=bucket)
        for key, data in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=data)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


class StorageHost(RecordingServer):
    """The storage host as clients see it: forwards each GET to moto (path, query and Host header
    as received, so presigned signatures hold) and records what it received."""

    def __init__(self, moto: MotoS3):
        self.moto = moto
        super().__init__()

    def route(self, h, method, body):
        connection = http.client.HTTPConnection("127.0.0.1", self.moto.port, timeout=10)
        try:
            connection.request(method, h.path, headers={"Host": h.headers["Host"]})
            answer = connection.getresponse()
            self.send(h, answer.status, answer.read(), answer.getheader("Content-Type", "application/octet-stream"))
        finally:
            connection.close()
