"""``anqi-edge validate``: gather the checks each stage makes of the files and devices a config names."""

from __future__ import annotations

from edge.config import EdgeConfig


def check_all(cfg: EdgeConfig) -> list[str]:
    """Every problem found, each as ``key.path: message``; empty when the config is usable."""
    from edge.actuators import check_config as check_actuators
    from edge.detect import check_config as check_detect
    from edge.relay import check_config as check_relay
    from edge.rules import check_config as check_rules
    from edge.source import check_config as check_source
    from edge.zone import check_config as check_zone

    problems: list[str] = []
    for check in (check_source, check_zone, check_rules, check_detect, check_actuators, check_relay):
        problems += check(cfg)
    return problems
