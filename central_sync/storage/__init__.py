"""The central store. Importing any part of it registers every table on ``models.Base`` (the web faces'
tables of :mod:`central_sync.storage.webtables` included), so the alembic check sees the whole schema."""

from central_sync.storage import webtables as webtables  # noqa: F401 - registers the web tables on Base
