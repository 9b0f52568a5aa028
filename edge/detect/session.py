"""onnxruntime sessions: provider choice from config (first available wins), clear errors for bad files."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

from anqi_contract.logs import log
from anqi_contract.manifest import ModelFileError

logger = logging.getLogger("edge.detect")


def choose_providers(wanted: list[str]) -> list[str]:
    """The first wanted provider this onnxruntime build has, plus CPU as the fallback."""
    available = ort.get_available_providers()
    first = next((p for p in wanted if p in available), None)
    if first is None:
        log(
            logger,
            "providers_unavailable",
            level=logging.WARNING,
            wanted=",".join(wanted),
            available=",".join(available),
            using="CPUExecutionProvider",
        )
        first = "CPUExecutionProvider"
    return [first] if first == "CPUExecutionProvider" else [first, "CPUExecutionProvider"]


def open_session(path: Path, providers: list[str], threads: int = 0, name: str = "") -> ort.InferenceSession:
    """An inference session for ``path``; a file onnxruntime cannot load raises :class:`ModelFileError` naming it."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # no busy-waiting between operators: the appliance shares its cores with capture and encoding
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    chosen = choose_providers(providers)
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=chosen)
    except Exception as e:  # onnxruntime raises several private exception types
        raise ModelFileError(
            f"cannot load model file {path} ({name or path.stem}): {str(e).splitlines()[0][:200]}"
        ) from None
    log(logger, "model_loaded", model=name or path.stem, file=path.name, provider=sess.get_providers()[0])
    return sess
