"""The web UI (issue 11): a single page of plain ES modules under ``static/``, served by the API
on its own port with the API's authentication (:mod:`.routes`). No build step, no CDN."""
