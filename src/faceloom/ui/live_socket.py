"""The Live screen's WebSocket: camera frames in from the browser, swapped frames out, as they come.

The page sends each camera frame as a JPEG (binary message) and settings changes as JSON text
(``{"settings": {"to": "a"}}``); the server answers with swapped JPEG frames (binary), each
second's figures (``{"report": {...}}``, see :class:`faceloom.live.session.LiveReport`) and
errors (``{"error": "one line"}``, after which it closes). The swap is
:func:`faceloom.live.session.run_live` on the workspace's model in a thread of its own, fed by a
:class:`~faceloom.live.capture.PushSource`: a frame that arrives while the swap is busy replaces
the waiting one, so a slow machine drops frames instead of falling behind. The consent rule applies
as to every swap, and the frames carry the visible label (they leave the machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from faceloom.config import LiveConfig
from faceloom.config.meta import SettingError
from faceloom.errors import FaceloomError
from faceloom.ui.http import HTTPError
from faceloom.ui.input_routes import consent_of
from faceloom.ui.registry import Registry

JPEG_QUALITY = 85
BROWSER_FPS = 30.0
"""Nominal rate of the browser's frames (they carry no clock of their own)."""


def _decode(data: bytes) -> np.ndarray | None:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if img is None else np.ascontiguousarray(img[:, :, ::-1])


def _encode(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    return buf.tobytes()


class LiveRoutes:
    """The ``/api/ws/{name}/live`` WebSocket; the app provides its workspace registry."""

    registry: Registry

    def live_routes(self) -> list[WebSocketRoute]:
        return [WebSocketRoute("/api/ws/{name}/live", self.live_socket)]

    def _live_model(self, name: str) -> tuple[Path, Any]:
        """The workspace's model dir and convert settings; FaceloomError when there is none yet."""
        from faceloom.workspace.workspace import Workspace

        entry = self.registry.get(name)
        if entry.draft:
            raise FaceloomError("add inputs and train a model first")
        if consent_of(entry.path) is None:
            raise FaceloomError("confirm the consent rule before the first swap")
        ws = Workspace.open(entry.path)
        if not (ws.model_dir / "model.json").is_file():
            raise FaceloomError("no trained model in this workspace yet: run train first")
        return ws.model_dir, ws.convert_config()

    async def live_socket(self, websocket: WebSocket) -> None:
        await websocket.accept()
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue[bytes | str] = asyncio.Queue(maxsize=4)

        def post(message: bytes | str) -> None:
            """From the session's threads: queue a message, dropping the oldest frame when full."""

            def put() -> None:
                if outbox.full():
                    outbox.get_nowait()
                outbox.put_nowait(message)

            loop.call_soon_threadsafe(put)

        try:
            model_dir, config = await asyncio.to_thread(self._live_model, websocket.path_params["name"])
        except (FaceloomError, HTTPError) as exc:
            text = exc.message if isinstance(exc, HTTPError) else str(exc)
            await websocket.send_text(json.dumps({"error": text, "consent_required": "consent" in text}))
            await websocket.close(code=1008)
            return

        from faceloom.live.capture import PushSource
        from faceloom.live.session import LiveControls, LiveReport, run_live

        controls = LiveControls()
        source: PushSource | None = None
        session: threading.Thread | None = None
        done = asyncio.Event()

        def run(src: PushSource) -> None:
            def report(rep: LiveReport) -> None:
                post(json.dumps({"report": dataclasses.asdict(rep)}))

            try:
                result = run_live(
                    str(model_dir),
                    src,
                    lambda rgb, _t: post(_encode(rgb)),
                    config,
                    LiveConfig(stall=3600.0),
                    on_report=report,
                    controls=controls,
                )
                post(json.dumps({"ended": dataclasses.asdict(result.total)}))
            except FaceloomError as exc:
                post(json.dumps({"error": str(exc)}))
            finally:
                loop.call_soon_threadsafe(done.set)

        async def send_loop() -> None:
            while True:
                message = await outbox.get()
                if isinstance(message, bytes):
                    await websocket.send_bytes(message)
                else:
                    await websocket.send_text(message)

        sender = asyncio.create_task(send_loop())
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes"):
                    rgb = _decode(message["bytes"])
                    if rgb is None:
                        post(json.dumps({"error": "a frame was not a readable JPEG"}))
                        continue
                    if source is None:
                        source = PushSource(rgb, fps=BROWSER_FPS, name="camera")
                        session = threading.Thread(target=run, args=(source,), name="live-ui", daemon=True)
                        session.start()
                    else:
                        try:
                            source.push(rgb)
                        except FaceloomError as exc:
                            post(json.dumps({"error": str(exc)}))
                elif message.get("text"):
                    try:
                        values = json.loads(message["text"]).get("settings", {})
                        changed = controls.change(dict(values))
                        post(json.dumps({"settings": {k: getattr(changed, k) for k in controls.CHANGEABLE}}))
                    except (SettingError, ValueError, TypeError, AttributeError) as exc:
                        post(json.dumps({"error": str(exc)}))
        except WebSocketDisconnect:
            pass
        finally:
            if source is not None:
                source.end()
            if session is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), timeout=30)
            sender.cancel()
