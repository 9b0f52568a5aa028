"""Where the project's own files live (models, audio prompts, example configs).

A checkout or an editable install finds them beside the ``edge`` package; a packaged
install points ``ANQI_HOME`` at the folder that holds ``models/`` and ``audio_prompts/``.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_home() -> Path:
    env = os.environ.get("ANQI_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parent.parent


def models_dir() -> Path:
    env = os.environ.get("ANQI_MODELS_DIR")
    return Path(env).expanduser().resolve() if env else project_home() / "models"


def audio_prompts_dir() -> Path:
    return project_home() / "audio_prompts"


def shared_dir() -> Path:
    """The development data folder that sits beside the checkout (``../shared``)."""
    env = os.environ.get("ANQI_SHARED")
    return Path(env).expanduser().resolve() if env else project_home().parent / "shared"
