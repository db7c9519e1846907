"""The web UI (`faceloom ui`): a small HTTP server and a plain HTML page over the library calls.

See :mod:`faceloom.ui.server` for the routes and the security rules and :mod:`faceloom.ui.jobs`
for how stages run (each one a low-priority ``faceloom run`` process).
"""

from __future__ import annotations

from faceloom.ui.server import UIConfig, UIServer, make_server, running_server

__all__ = ["UIConfig", "UIServer", "make_server", "running_server"]
