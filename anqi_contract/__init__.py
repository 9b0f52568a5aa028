"""The contract between the edge appliance and the central office, imported by both sides.

``edge`` and ``central_sync`` import this package and never each other (``tests/test_boundaries.py``
walks the imports). What lives here changes both sides at once, so it changes with care:

* :mod:`~anqi_contract.event` — the violation event schema (``SCHEMA_VERSION``) and its JSON Schema.
* :mod:`~anqi_contract.protocol` — MQTT topics, the media chunk frames, acks (the wire protocol).
* :mod:`~anqi_contract.sealed` — evidence sealed on the device to central's public key.
* :mod:`~anqi_contract.logs` — the logfmt logger (one line per event, no secrets or face data).
* :mod:`~anqi_contract.fsutil` — atomic writes (write + fsync + rename).
* :mod:`~anqi_contract.notify` — the systemd notifier (READY / WATCHDOG / STOPPING).
* :mod:`~anqi_contract.localbroker` — the development mosquitto both sides' demos and tests start.
* :mod:`~anqi_contract.config` — config base helpers (section base, errors naming file and key).
* :mod:`~anqi_contract.paths`, :mod:`~anqi_contract.manifest` — where the project's files and models are.
* :mod:`~anqi_contract.faces` — the shared face embedding space (YuNet + SFace; needs OpenCV, so it
  is the one module here that is never imported by the others).

Its dependencies are the small core of ``setup.py`` (numpy, pydantic, PyYAML, PyNaCl).
"""
