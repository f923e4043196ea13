"""Deployment files: Dockerfile (static checks), docker-compose.yml (``docker-compose config``),
.env.example (documents every setting) and the container health check."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import re
import shlex
import shutil
import subprocess
import threading
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from redis_server import PERSISTENCE
from werkzeug.serving import make_server

from samiam.service import ServiceConfig, create_app, healthcheck
from samiam.service.config import ENVIRONMENT
from samiam.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = (ROOT / ".env.example").read_text()


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_runs_gunicorn_on_9090_as_a_non_root_user_with_a_health_check():
    instructions = dockerfile_instructions()
    first = dict(instructions)
    users = [args for name, args in instructions if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "9090" in first["EXPOSE"].split()
    assert "SAMIAM_MODEL_DIR=/models" in first["ENV"] and "/models" in first["VOLUME"]
    health = ast.literal_eval(first["HEALTHCHECK"].split("CMD", 1)[1].strip())
    assert health[:2] == ["python", "-m"] and importlib.util.find_spec(health[2]) is not None
    command = ast.literal_eval(first["CMD"])
    assert command[0] == "gunicorn" and "0.0.0.0:9090" in command
    module, _, attribute = command[-1].partition(":")
    tree = ast.parse((ROOT / f"{module}.py").read_text())
    assigned = {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets}
    assert attribute in assigned


def requirement_pins(text: str) -> dict[str, str]:
    """``name==version`` lines -> {normalised name: version}; anything else is an error."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version and ";" not in version, f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def test_image_installs_the_pinned_requirements_with_the_torch_ci_tests():
    instructions = dockerfile_instructions()
    base = dict(instructions)["FROM"]
    assert not base.startswith(("pytorch/", "nvcr.io/nvidia/pytorch")), "the base must not bring its own torch"
    installs = [args for name, args in instructions if name == "RUN" and "pip install" in args]
    assert any(re.search(r"pip install (\S+ )*-r requirements\.txt", args) for args in installs)
    assert all("-r requirements.txt" in args or "--no-deps" in args for args in installs), installs
    pins = requirement_pins((ROOT / "requirements.txt").read_text())
    ci = dict(re.findall(r"\b(torch|torchvision)==(\S+)", (ROOT / ".ci" / "run").read_text()))
    assert set(ci) == {"torch", "torchvision"}
    assert {name: pins.get(name) for name in ci} == ci
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = project["dependencies"] + extras["service"] + extras["sam"]  # web tier and GPU worker
    outside = {}
    for requirement in map(Requirement, declared):
        name = canonicalize_name(requirement.name)
        if pins.get(name) is None or not requirement.specifier.contains(pins[name], prereleases=True):
            outside[str(requirement)] = pins.get(name)
    assert outside == {}, "pyproject.toml dependencies missing from or outside requirements.txt"


def test_env_example_documents_every_setting():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE, re.MULTILINE))
    engine = {f"SAMIAM_{section.name}_{f.name}".upper()
              for section in dataclasses.fields(Settings())
              for f in dataclasses.fields(getattr(Settings(), section.name))}
    assert set(ENVIRONMENT) - documented == set()
    assert engine - documented == set()


def test_env_example_defaults_parse_to_the_defaults():
    """Uncommenting every line of .env.example changes nothing (example values aside)."""
    examples = {"REDIS_URL", "LABEL_STUDIO_URL", "SAMIAM_IMAGE_HOSTS", "SAMIAM_MAX_IMAGE_BYTES",
                "SAMIAM_FETCH_TIMEOUT_S", "SAMIAM_PROPOSALS_MODEL_DIR"}
    values = dict(re.findall(r"^#\s*([A-Z][A-Z0-9_]+)=(.*)$", ENV_EXAMPLE, re.MULTILINE))
    environ = {k: v for k, v in values.items() if k not in examples}
    assert ServiceConfig.from_env(environ) == ServiceConfig(settings=Settings())


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_file_is_valid(tmp_path):
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    result = subprocess.run(["docker-compose", "-f", "docker-compose.yml", "config", "-q"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_docker_compose_wires_redis_web_and_a_gpu_worker():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert shlex.join(PERSISTENCE) in shlex.join(services["redis"]["command"])  # what the fault tests run
    assert any(volume.endswith(":/data") for volume in services["redis"]["volumes"])
    assert any(port.endswith(":9090") for port in services["web"]["ports"])
    worker = services["worker"]
    assert shlex.join(worker["command"]) == "samiam worker"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    for name in ("web", "worker"):
        assert services[name]["env_file"] == ".env"
        assert services[name]["environment"]["REDIS_URL"].startswith("redis://redis:")


def test_healthcheck_exits_0_for_a_running_service_and_1_otherwise(monkeypatch):
    app = create_app(ServiceConfig(basic_auth_user="u", basic_auth_pass="p"))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("SAMIAM_HEALTH_URL", f"http://127.0.0.1:{server.server_port}/health")
        monkeypatch.setenv("BASIC_AUTH_USER", "u")
        monkeypatch.setenv("BASIC_AUTH_PASS", "p")
        assert healthcheck.main() == 0
        monkeypatch.setenv("BASIC_AUTH_PASS", "wrong")
        assert healthcheck.main() == 1
    finally:
        server.shutdown()
        app.extensions["samiam"]["dispatcher"].shutdown()
    assert healthcheck.main() == 1  # nobody listens any more
