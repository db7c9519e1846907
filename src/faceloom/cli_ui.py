"""`faceloom ui`: serve the web UI (workspaces, faces, jobs, results) in the browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceloom.cli import app, echo


@app.command()
def ui(
    workspaces: Annotated[
        Path, typer.Option("--workspaces", help="Folder where the UI creates and lists workspaces.")
    ] = Path("faceloom-workspaces"),
    allow: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow",
            help="A folder whose videos and images may be picked as inputs (read only). Repeatable.",
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on; beyond 127.0.0.1 an access token is required."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port; 0 picks a free one.")] = 7860,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="FACELOOM_UI_TOKEN",
            help="Access token (made up and printed when --host is not loopback and none is given).",
        ),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest upload accepted.")] = 2048,
    max_training_jobs: Annotated[
        int, typer.Option("--max-training-jobs", help="Training jobs run at once; others wait in a queue.")
    ] = 1,
    max_jobs: Annotated[int, typer.Option("--max-jobs", help="Jobs of any kind run at once.")] = 2,
    nice: Annotated[
        int, typer.Option("--nice", help="Niceness of job processes (0-19).", min=0, max=19)
    ] = 10,
) -> None:
    """Serve the web UI: workspaces, inputs, face grids, jobs with live progress, results.

    Jobs run as separate low-priority `faceloom run` processes and keep running when the page or this
    server is closed; a restarted server shows them again.
    """
    from faceloom.ui.security import is_loopback, new_token
    from faceloom.ui.server import UIConfig, make_server

    for folder in allow or []:
        if not folder.is_dir():
            raise ValueError(f"--allow {folder}: no such folder")
    if not is_loopback(host) and not token:
        token = new_token()
    config = UIConfig(
        workspaces=workspaces,
        allowed=list(allow or []),
        host=host,
        port=port,
        token=token,
        max_upload_mb=max_upload_mb,
        max_training_jobs=max_training_jobs,
        max_jobs=max_jobs,
        nice=nice,
    )
    server = make_server(config)
    url = server.url + (f"?token={token}" if token else "")
    echo("faceloom UI - swap only faces whose owners agreed.")
    echo(f"workspaces: {config.workspaces}")
    for folder in config.allowed:
        echo(f"allowed folder: {folder}")
    typer.echo(f"open {url}")  # printed even with --quiet: it is the one thing needed
    if token and not is_loopback(host):
        echo("anyone with this URL (it holds the access token) can use the UI; Ctrl-C stops the server")
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        echo("UI stopped; running jobs go on and show up again when the UI is restarted")
    finally:
        server.server_close()
        server.app.jobs.close()
