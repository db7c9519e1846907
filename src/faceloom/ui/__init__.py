"""The web UI (`faceloom ui`): Starlette routes served by uvicorn, and a plain HTML page over the
library calls.

Modules: :mod:`.server` (uvicorn, the bound socket), :mod:`.app` (the routes and the UI's state),
:mod:`.workspace_routes` and :mod:`.input_routes` (one workspace's routes), :mod:`.security` (path
confinement, tokens and the access guard), :mod:`.registry` (the workspaces the UI knows),
:mod:`.jobs` (each run a low-priority ``faceloom run`` process), :mod:`.media` (browser copies of
videos), :mod:`.settings_schema` (the Settings screen, from the settings' metadata).
"""
