"""`faceloom ui`: serve the web UI (workspaces, faces, jobs, results) in the browser."""

from __future__ import annotations

import os

from faceloom.cli.options import Given, offer, settings_options
from faceloom.cli.output import echo
from faceloom.config import UISettings

TOKEN_ENV = "FACELOOM_UI_TOKEN"


@settings_options(offer(UISettings))
def ui(*, given: Given) -> None:
    """Serve the web UI: workspaces, inputs, face grids, jobs with live progress, results.

    Jobs run as separate low-priority `faceloom run` processes and keep running when the page or this
    server is closed; a restarted server shows them again.
    """
    import typer

    from faceloom.ui.config import UIConfig
    from faceloom.ui.security import is_loopback, new_token
    from faceloom.ui.server import make_server

    fixed = (
        {}
        if "token" in given.of(UISettings) or not os.environ.get(TOKEN_ENV)
        else {"token": os.environ[TOKEN_ENV]}
    )
    settings = given.config(UISettings, None, **fixed)
    for allowed in settings.allow:
        if not os.path.isdir(allowed):
            raise ValueError(f"--allow {allowed}: no such folder")
    if not is_loopback(settings.host) and not settings.token:
        settings = settings.replace(token=new_token())
    config = UIConfig.from_settings(settings)
    server = make_server(config)
    token = config.token
    url = server.url + (f"?token={token}" if token else "")
    echo("faceloom UI - swap only faces whose owners agreed.")
    echo(f"workspaces: {config.workspaces}")
    for folder in config.allowed:
        echo(f"allowed folder: {folder}")
    typer.echo(f"open {url}", err=False)  # printed even with --quiet: it is the one thing needed
    if token and not is_loopback(config.host):
        echo("anyone with this URL (it holds the access token) can use the UI; Ctrl-C stops the server")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.app.jobs.close()
    echo("UI stopped; running jobs go on and show up again when the UI is restarted")
