#!/usr/bin/env bash
# Regenerate requirements.txt: the exact package set the service image installs.
#
#   bash tools/lock_requirements.sh            # after changing pyproject.toml's dependencies
#
# Installs samiam with its `service` and `sam` extras (the web tier and the GPU worker share the
# image; the worker needs SAM), and torch/torchvision at the versions CI tests
# (read from .ci/run, so the image and CI cannot drift apart), into a fresh virtualenv, then
# writes `pip freeze` of it. The result is for CPython 3.11 on Linux x86_64 (the image's
# platform): torch's Linux wheels bring their CUDA libraries as nvidia-* packages, pinned too.
# Needs python3.11 and pip access to the package index; takes a few minutes (torch is large).
set -euo pipefail
cd "$(dirname "$0")/.."

versions=$(grep -oE 'torch==[^ ]+ torchvision==[^ ]+' .ci/run | head -n 1)
if [ -z "$versions" ]; then
    echo "lock_requirements: .ci/run names no 'torch==X torchvision==Y' to pin" >&2
    exit 1
fi

venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
"${PYTHON:-python3.11}" -m venv "$venv"
# shellcheck disable=SC2086 # $versions holds two requirement words
"$venv/bin/pip" install --quiet --disable-pip-version-check $versions '.[service,sam]'

{
    echo "# The service image's packages, pinned (CPython 3.11, Linux x86_64)."
    echo "# Generated from pyproject.toml ([service] and [sam] extras) by: bash tools/lock_requirements.sh"
    echo "# Do not edit by hand; install with: pip install -r requirements.txt && pip install --no-deps ."
    "$venv/bin/pip" freeze --all --disable-pip-version-check --exclude pip --exclude samiam
} > requirements.txt
echo "wrote requirements.txt ($(grep -vc '^#' requirements.txt) packages)"
