"""The routes of the web faces, one module per face: :mod:`.cockpit`, :mod:`.console`, :mod:`.rider`; what they
share in :mod:`.common`. :func:`central_sync.web.app.mount_web` mounts them."""
