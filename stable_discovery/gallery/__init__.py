"""The screening gallery: a small local web app over a workspace's run store.

``sdp gallery`` serves it with the standard library's ``http.server``; the page is plain
HTML, CSS and JavaScript shipped in ``static/``. Modules:

- :mod:`.paths`: which image files may be served (inside an experiment folder, nothing else);
- :mod:`.thumbs`: thumbnails made once on demand and cached under ``.thumbs/``;
- :mod:`.api`: validation of what the page sends;
- :mod:`.live`: the experiment list with an ETag and the runs going on, for a page that follows them;
- :mod:`.download`: the filtered images as a zip streamed to the browser;
- :mod:`.server`: the HTTP server and its routes.

The SQL behind its JSON API lives in :mod:`stable_discovery.store.gallery_queries`.
"""

from __future__ import annotations

__all__ = ["GalleryServer", "make_server"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from stable_discovery.gallery import server

        return getattr(server, name)
    raise AttributeError(name)
