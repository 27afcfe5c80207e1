"""The web app behind `monitor serve`: Flask on waitress, read-only, server-rendered pages (search with
facets, paper pages with evidence, the evidence map, trend charts as SVG, status) with a JSON API behind
each, and the feed folder served as before. No JavaScript framework and no external asset.

- :mod:`.context`    what the composition root hands the app (store, labels, feeds folder, status …)
- :mod:`.params`     request parameters → checked values (the filters are `monitor search`'s)
- :mod:`.present`    pure shaping of stored values for pages and JSON (escaping, highlighting, links)
- :mod:`.charts`     monthly bar charts as inline SVG
- :mod:`.cache`      aggregate reads kept until the database changes
- :mod:`.api`        the JSON endpoints
- :mod:`.pages`      the HTML pages and the export download
- :mod:`.feedfiles`  the feed folder with its validators, gzip and ``/healthz``
- :mod:`.factory`    the Flask app: blueprints, security headers, errors, the path guard
- :mod:`.server`     waitress with explicit limits (connections, timeouts, header size, threads)
"""

from .context import Labels, WebContext
from .factory import create_app

__all__ = ["Labels", "WebContext", "create_app"]
