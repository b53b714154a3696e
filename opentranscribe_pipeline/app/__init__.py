"""The review app: listen, search and name speakers in a browser (issue 33). Dagster-free.

``create_app(root, store=None, ...)`` builds the FastAPI application (:mod:`.web`); the
``opentranscribe serve`` command runs it with uvicorn. Pages in :mod:`.pages`, the JSON API in
:mod:`.api`, what they read in :mod:`.services`, the edits in :mod:`.edits`, audio in
:mod:`.audio`, path and CSRF checks in :mod:`.security`. See ``docs/review-app.md``.
"""

from .web import create_app

__all__ = ["create_app"]
