"""STUB: replaced by the stage's own work."""
from edge.config import EdgeConfig


def check_config(cfg: EdgeConfig) -> list[str]:
    return []
