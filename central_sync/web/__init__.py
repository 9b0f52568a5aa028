"""The platform's web faces (zh-CN, offline: no script, style or font from outside the package).

* ``/cockpit?token=`` big-screen cockpit (kiosk token, read-only), live via ``/cockpit/stream`` (SSE).
* ``/console`` officers' console (login, CSRF, roles scoped to communities, person views audited).
* ``/rider/{token}`` rider services (one-time link of a reminder task): own violations, case study, quiz.
"""

from central_sync.web.app import mount_web

__all__ = ["mount_web"]
