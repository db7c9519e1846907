"""The web UI's server: path confinement (traversal, encoded, absolute, symlinks), access token,
cross-site requests, uploads (size limit, non-media), drafts becoming workspaces, consent, the face
grid, browser copies of videos, the job queue (stop, resume, restart) and `faceloom ui` itself.

Jobs here run a stand-in command (a sleeping Python process) instead of `faceloom run`; the real
chain runs in tests/test_ui_browser.py.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceloom.media.writer import write_image
from faceloom.ui import security
from faceloom.ui.jobs import Job, JobManager
from faceloom.ui.security import Forbidden
from faceloom.ui.server import UIConfig, UIServer, running_server
from faceloom.workspace import Workspace

SECRET = "top-secret-content-7f3a"

STANDIN = """
import signal, sys, time
def stop(*_):
    print("stopping: saved", flush=True)
    sys.exit(130)
signal.signal(signal.SIGINT, stop)
print("working", flush=True)
time.sleep(float(sys.argv[1]))
print("finished", flush=True)
"""


# ---- helpers ----------------------------------------------------------------------------------------
def request(
    server: UIServer,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    write_header: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    """One request with the path sent exactly as given (http.client does not normalise it)."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=30)
    h = {"X-Faceloom": "1"} if write_header else {}
    h.update(headers or {})
    if isinstance(body, dict | list):
        body = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def get_json(server: UIServer, path: str, **kw: Any) -> tuple[int, Any]:
    status, _, data = request(server, "GET", path, **kw)
    return status, json.loads(data) if data else None


def post_json(server: UIServer, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    status, _, data = request(server, "POST", path, body if body is not None else {}, **kw)
    return status, json.loads(data) if data else None


def png(path: Path, seed: int = 0) -> Path:
    rgb = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, rgb, synthetic=False)
    return path


def standin_command(script: Path, seconds: float = 30.0) -> Any:
    def command(job: Job) -> list[str]:
        return [sys.executable, str(script), str(seconds)]

    return command


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Path]:
    """Workspaces folder, an allowed folder with media, and an outside folder with a secret."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    png(outside / "secret.png", 9)
    allowed = tmp_path / "allowed"
    png(allowed / "a1.png", 1)
    png(allowed / "b1.png", 2)
    (allowed / "sub").mkdir()
    png(allowed / "sub" / "b2.png", 3)
    (allowed / "notes.txt").write_text("not media")
    (allowed / "link-out").symlink_to(outside, target_is_directory=True)
    (allowed / "link-secret.png").symlink_to(outside / "secret.png")
    script = tmp_path / "standin.py"
    script.write_text(STANDIN)
    return {"root": tmp_path, "ws": tmp_path / "ws", "allowed": allowed, "outside": outside, "script": script}


def make_server(env: dict[str, Path], **kw: Any) -> Any:
    config = UIConfig(workspaces=env["ws"], allowed=[env["allowed"]], port=0, **kw)
    assert config.state_dir is not None
    jobs = JobManager(config.state_dir, command=standin_command(env["script"]), poll_s=0.1)
    return running_server(config, jobs)


@pytest.fixture
def server(env: dict[str, Path]) -> Iterator[UIServer]:
    with make_server(env) as srv:
        yield srv


@pytest.fixture
def workspace(env: dict[str, Path], server: UIServer) -> Path:
    """A real workspace 'w1' made with the library (inputs from the allowed folder)."""
    ws = Workspace.create(
        env["ws"] / "w1", [str(env["allowed"] / "a1.png")], [str(env["allowed"] / "b1.png")], None
    )
    (ws.root / "output").mkdir()
    (ws.root / "output" / "note.txt").write_text("hello")
    (ws.root / "link-out").symlink_to(env["outside"], target_is_directory=True)
    (ws.root / "evil.txt").symlink_to(env["outside"] / "secret.txt")
    (ws.root / "passwd").symlink_to("/etc/passwd")
    return Path(ws.root)


# ---- path confinement ---------------------------------------------------------------------------------
def test_security_helpers(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f.png").write_bytes(b"x")
    (root / "out").symlink_to("/etc", target_is_directory=True)
    assert security.confine_relative(root, "d/f.png") == (root / "d" / "f.png").resolve()
    for bad in ("../x", "d/../../x", "/etc/passwd", "out/passwd", "d/\x00", "d\\..\\..\\x", ".."):
        with pytest.raises(Forbidden):
            security.confine_relative(root, bad)
    with pytest.raises(Forbidden):
        security.confine("/etc/passwd", [root])
    with pytest.raises(Forbidden):
        security.confine(root / "d" / ".." / ".." / "x", [root])
    assert security.safe_filename("../../etc/passwd") == "passwd"
    assert security.safe_filename("..\\..\\evil clip.MP4") == "evil_clip.mp4"
    assert security.safe_filename("...") == "upload"
    assert security.is_loopback("127.0.0.1") and security.is_loopback("::1")
    assert security.is_loopback("localhost") and security.is_loopback("127.8.9.10")
    assert not security.is_loopback("0.0.0.0") and not security.is_loopback("192.168.1.4")
    with pytest.raises(ValueError, match="token"):
        UIConfig(workspaces=tmp_path / "w", host="0.0.0.0")


TRAVERSALS = [
    "/files/ws/w1/../../etc/passwd",
    "/files/ws/w1/../../../../../../etc/passwd",
    "/files/ws/w1/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/files/ws/w1/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/files/ws/w1/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/files/ws/w1/%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "/files/ws/w1/..%5c..%5c..%5cetc%5cpasswd",
    "/files/ws/w1/%2fetc%2fpasswd",
    "/files/ws/w1//etc/passwd",
    "/files/ws/w1/output/..%2f..%2f..%2fetc/passwd",
    "/files/ws/w1/passwd",
    "/files/ws/w1/link-out/secret.txt",
    "/files/ws/w1/evil.txt",
    "/files/ws/..%2f..%2f..%2fetc/passwd",
    "/files/ws/%2e%2e/%2e%2e/etc/passwd",
    "/files/ws/%2fetc/passwd",
    "/static/../../etc/passwd",
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e%2fserver.py",
    "/static/..%2fserver.py",
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/api/ws/..%2f..%2fetc",
    "/api/browse?root=0&path=../../../../etc",
    "/api/browse?root=0&path=%2e%2e%2f%2e%2e%2fetc",
    "/api/browse?root=0&path=/etc",
    "/api/browse?root=0&path=link-out",
    "/api/browse?root=-1&path=",
    "/api/browse?root=1&path=",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_refused(server: UIServer, workspace: Path, path: str) -> None:
    status, _, body = request(server, "GET", path)
    assert status in (400, 403, 404), (path, status, body[:200])
    assert b"root:" not in body and SECRET.encode() not in body
    assert b"import " not in body  # no source file of the package either


def test_files_inside_are_served_with_safe_headers(server: UIServer, workspace: Path) -> None:
    status, headers, body = request(server, "GET", "/files/ws/w1/output/note.txt")
    assert status == 200 and body == b"hello"
    assert headers["content-type"].startswith("text/plain")
    assert "sandbox" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    status, headers, body = request(
        server, "GET", "/files/ws/w1/output/note.txt", headers={"Range": "bytes=1-3"}
    )
    assert status == 206 and body == b"ell" and headers["content-range"] == "bytes 1-3/5"
    status, headers, _ = request(server, "GET", "/files/ws/w1/output/note.txt?download=1")
    assert status == 200 and headers["content-disposition"].startswith("attachment")
    status, headers, body = request(server, "GET", "/static/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript") and b"fetch" in body


def test_inputs_and_open_stay_inside_allowed_folders(
    server: UIServer, workspace: Path, env: dict[str, Path]
) -> None:
    for paths in (
        ["/etc/passwd"],
        ["../../../../etc/passwd"],
        [str(env["outside"] / "secret.png")],
        [str(env["allowed"] / "link-secret.png")],
        [str(env["allowed"] / "link-out" / "secret.png")],
        [str(env["allowed"] / ".." / "outside" / "secret.png")],
    ):
        status, data = post_json(server, "/api/ws/w1/inputs", {"role": "b", "paths": paths})
        assert status == 403, (paths, status, data)
    status, data = post_json(
        server, "/api/ws/w1/inputs", {"role": "b", "paths": [str(env["allowed"] / "notes.txt")]}
    )
    assert status == 415 and "not a video or image" in data["error"]
    for path in ("/etc", str(env["outside"]), "../../..", str(env["allowed"] / "link-out")):
        status, _ = post_json(server, "/api/workspaces/open", {"path": path})
        assert status == 403, path
    # the listing hides links out of the allowed folder and non-media files
    status, data = get_json(server, "/api/browse?root=0&path=")
    assert status == 200
    assert data["dirs"] == ["sub"] and [f["name"] for f in data["files"]] == ["a1.png", "b1.png"]
    status, data = post_json(
        server, "/api/ws/w1/inputs", {"role": "b", "paths": [str(env["allowed"] / "sub" / "b2.png")]}
    )
    assert status == 200 and data["inputs"]["b"][-1] == str((env["allowed"] / "sub" / "b2.png").resolve())


def test_settings_cannot_take_paths(server: UIServer, workspace: Path) -> None:
    status, data = post_json(server, "/api/ws/w1/settings", {"train": {"init_from": "/etc"}})
    assert status == 403
    status, data = post_json(server, "/api/ws/w1/settings", {"inputs": {"a": ["/etc/passwd"]}})
    assert status == 400
    status, data = post_json(server, "/api/ws/w1/settings", {"convert": {"color": "../../x"}})
    assert status == 400
    status, data = post_json(
        server, "/api/ws/w1/settings", {"extract": {"every_n": 3}, "train": {"minutes": ""}}
    )
    assert status == 200, data
    assert data["settings"]["extract"]["every_n"] == 3
    assert Workspace.open(workspace).settings["extract"]["every_n"] == 3


# ---- access ------------------------------------------------------------------------------------------------
def test_token_required(env: dict[str, Path]) -> None:
    with make_server(env, token="s3cret-token") as srv:
        assert request(srv, "GET", "/api/info")[0] == 401
        assert request(srv, "GET", "/")[0] == 401
        assert request(srv, "GET", "/static/app.js")[0] == 401
        assert request(srv, "GET", "/api/info", headers={"X-Faceloom-Token": "wrong"})[0] == 401
        assert request(srv, "GET", "/api/info?token=wrong")[0] == 401
        assert request(srv, "GET", "/api/info", headers={"X-Faceloom-Token": "s3cret-token"})[0] == 200
        assert request(srv, "GET", "/api/info", headers={"Authorization": "Bearer s3cret-token"})[0] == 200
        status, headers, _ = request(srv, "GET", "/?token=s3cret-token")
        assert status == 303 and headers["location"] == "/"
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        pair = cookie.split(";")[0]
        assert request(srv, "GET", "/", headers={"Cookie": pair})[0] == 200
        assert (
            request(srv, "POST", "/api/workspaces", {"name": "x"}, headers={"Cookie": "faceloom_token=no"})[0]
            == 401
        )


def test_host_header_and_cross_site_writes_refused(server: UIServer) -> None:
    # DNS rebinding: a page of evil.example resolving to 127.0.0.1 sends its own host name
    assert request(server, "GET", "/api/info", headers={"Host": "evil.example:80"})[0] == 403
    assert request(server, "GET", "/api/info", headers={"Host": "localhost"})[0] == 200
    # a cross-site form cannot add the X-Faceloom header; a cross-site fetch carries its Origin
    status, _, _ = request(server, "POST", "/api/workspaces", {"name": "csrf"}, write_header=False)
    assert status == 403
    status, _, _ = request(
        server, "POST", "/api/workspaces", {"name": "csrf"}, headers={"Origin": "http://evil.example"}
    )
    assert status == 403
    status, _ = get_json(server, "/api/ws/csrf")
    assert status == 404


# ---- workspaces, uploads, consent -----------------------------------------------------------------------
def test_draft_becomes_workspace_and_uploads(server: UIServer, env: dict[str, Path]) -> None:
    status, data = post_json(
        server, "/api/workspaces", {"name": "my-swap", "model": "lite", "iterations": 20}
    )
    assert status == 201 and data["draft"] is True
    assert post_json(server, "/api/workspaces", {"name": "my-swap"})[0] == 409
    assert post_json(server, "/api/workspaces", {"name": "../evil"})[0] == 400
    assert post_json(server, "/api/workspaces", {"name": "x", "model": "nope"})[0] == 400
    status, data = get_json(server, "/api/ws/my-swap")
    assert status == 200 and data["draft"] and data["stages"]["train"]["state"] == "pending"
    assert post_json(server, "/api/ws/my-swap/run", {})[0] == 409  # no inputs yet
    # upload A: a real image; its name is reduced to a safe file name inside inputs/a
    blob = (env["allowed"] / "a1.png").read_bytes()
    status, _, body = request(
        server, "POST", "/api/ws/my-swap/upload?role=a&name=..%2F..%2Fface%20one.png", blob
    )
    assert status == 201, body
    status, data = post_json(
        server, "/api/ws/my-swap/inputs", {"role": "b", "paths": [str(env["allowed"] / "b1.png")]}
    )
    assert status == 200 and data["draft"] is False
    root = env["ws"] / "my-swap"
    ws = Workspace.open(root)
    assert ws.settings["train"]["model"] == "lite" and ws.settings["train"]["iterations"] == 20
    assert ws.inputs_a == [str(root.resolve() / "inputs" / "a" / "face_one.png")]
    assert (root / "inputs" / "a" / "face_one.png").read_bytes() == blob
    status, data = get_json(server, "/api/workspaces")
    assert [w["name"] for w in data["workspaces"]] == ["my-swap"]
    # removing the only input of A is refused by the workspace with a clear message
    status, data = post_json(
        server, "/api/ws/my-swap/inputs", {"role": "a", "paths": ws.inputs_a, "mode": "remove"}
    )
    assert status == 400 and "person A" in data["error"]


def test_upload_limits_and_non_media(env: dict[str, Path]) -> None:
    with make_server(env, max_upload_mb=0.05) as srv:
        Workspace.create(
            env["ws"] / "w1", [str(env["allowed"] / "a1.png")], [str(env["allowed"] / "b1.png")], None
        )
        # too large: refused from the Content-Length before a byte is stored
        host, port = srv.server_address[:2]
        conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
        conn.putrequest("POST", "/api/ws/w1/upload?role=b&name=big.mp4")
        conn.putheader("X-Faceloom", "1")
        conn.putheader("Content-Length", str(10 * 1024 * 1024))
        conn.endheaders()
        resp = conn.getresponse()
        data = json.loads(resp.read())
        conn.close()
        assert resp.status == 413 and "too large" in data["error"]
        # not a media suffix
        status, _, body = request(srv, "POST", "/api/ws/w1/upload?role=b&name=notes.txt", b"hello")
        assert status == 415 and b"not a video or image" in body
        # a media suffix but not media: deleted and refused with the reason
        status, _, body = request(srv, "POST", "/api/ws/w1/upload?role=b&name=clip.mp4", b"\x00garbage" * 100)
        assert status == 415 and b"clip.mp4 is not a video or image faceloom can read" in body
        status, _, body = request(srv, "POST", "/api/ws/w1/upload?role=a&name=face.jpg", b"not a jpeg")
        assert status == 415
        # a target must be a video
        status, _, _ = request(srv, "POST", "/api/ws/w1/upload?role=target&name=x.png", b"x")
        assert status == 415
        # no chunked uploads (no Content-Length, no limit check)
        status, _, _ = request(
            srv,
            "POST",
            "/api/ws/w1/upload?role=b&name=c.png",
            iter([b"abc"]),
            headers={"Transfer-Encoding": "chunked"},
        )
        assert status == 411
        leftovers = (
            list((env["ws"] / "w1" / "inputs").rglob("*")) if (env["ws"] / "w1" / "inputs").exists() else []
        )
        assert [p for p in leftovers if p.is_file()] == []
        # a good image lands in the inputs
        status, _, body = request(
            srv, "POST", "/api/ws/w1/upload?role=b&name=b9.png", (env["allowed"] / "b1.png").read_bytes()
        )
        assert status == 201
        assert Workspace.open(env["ws"] / "w1").inputs_b[-1].endswith("inputs/b/b9.png")


def test_consent_before_first_swap(server: UIServer, workspace: Path) -> None:
    status, data = post_json(server, "/api/ws/w1/run", {})
    assert status == 409 and data["consent_required"] and "consent" in data["consent_text"]
    status, data = post_json(server, "/api/ws/w1/run", {"stages": ["convert"]})
    assert status == 409 and data["consent_required"]
    assert post_json(server, "/api/ws/w1/consent", {"agree": False})[0] == 400
    assert post_json(server, "/api/ws/w1/consent", {"agree": True})[0] == 200
    assert json.loads((workspace / "ui-consent.json").read_text())["agreed"] is True
    status, data = post_json(server, "/api/ws/w1/run", {"stages": ["convert", "extract"], "iterations": 5})
    assert status == 202
    job = data["job"]
    assert job["stages"] == ["extract", "convert"] and job["args"] == ["--iterations", "5"]
    assert post_json(server, "/api/ws/w1/run", {"stages": ["train"]})[0] == 409  # one job per workspace
    assert post_json(server, f"/api/jobs/{job['id']}/stop")[0] == 200
    assert post_json(server, "/api/ws/w1/run", {"stages": ["bogus"]})[0] == 400


def test_unknown_routes_and_methods(server: UIServer) -> None:
    assert request(server, "GET", "/api/nothing")[0] == 404
    assert request(server, "DELETE", "/api/workspaces")[0] == 405
    status, _, body = request(
        server, "POST", "/api/workspaces", b"{not json", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and b"not JSON" in body
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"faceloom" in body


# ---- face grid and videos (real media) -------------------------------------------------------------------
def test_face_grid_and_remove(server: UIServer, workspace: Path, g1_faceset: Path) -> None:
    shutil.copytree(g1_faceset, workspace / "facesets" / "a")
    status, data = get_json(server, "/api/ws/w1/faces/a?limit=10")
    assert status == 200 and data["total"] == 75 and len(data["faces"]) == 10
    face = data["faces"][0]
    status, headers, body = request(server, "GET", face["url"])
    assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    ids = [f["id"] for f in data["faces"][:3]]
    status, data = post_json(server, "/api/ws/w1/faces/a/remove", {"ids": ids})
    assert status == 200 and data["removed"] == ids and data["remaining"] == 72
    assert request(server, "GET", face["url"])[0] == 404
    assert post_json(server, "/api/ws/w1/faces/a/remove", {"ids": ["no-such-face"]})[0] == 400
    assert get_json(server, "/api/ws/w1/faces/b")[0] == 404
    assert get_json(server, "/api/ws/w1/faces/..%2f..")[0] in (400, 403, 404)


def test_result_video_plays_in_browser(server: UIServer, workspace: Path, grid: dict[str, Path]) -> None:
    """The swapped video keeps GRID's MP2 audio (MP4 takes it); the page gets an H.264/AAC copy."""
    import av

    from faceloom.media.reader import iter_video, probe_video
    from faceloom.media.writer import VideoWriter, read_label
    from faceloom.ui.media import plays_in_browser

    src = grid["g1"]
    info = probe_video(src)
    out = workspace / "output" / "swapped.mp4"
    with VideoWriter(out, fps=info.fps, size=(info.width, info.height), audio_from=src) as vw:
        for frame in iter_video(src):
            vw.write(frame.rgb)
    assert vw.audio_codec == "mp2" and not plays_in_browser(out)
    status, data = get_json(server, "/api/ws/w1/video/output")
    assert status == 200, data
    assert data["download"] == "/files/ws/w1/output/swapped.mp4?download=1"
    status, headers, body = request(server, "GET", data["url"], headers={"Range": "bytes=0-"})
    assert status == 206 and headers["content-type"] == "video/mp4"
    preview = workspace / "ui-preview" / "output.mp4"
    assert plays_in_browser(preview) and len(body) == preview.stat().st_size
    with av.open(str(out)) as c:
        frames = c.streams.video[0].frames
    with av.open(str(preview)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio[0].codec_context.name == "aac"
        assert c.streams.video[0].frames == frames == vw.frames_written
    label = read_label(preview)
    assert label is not None and label["synthetic"] == "1"  # the synthetic label goes along
    from faceloom.media.credentials import read_credentials

    signed = read_credentials(preview)  # the browser copy is signed too
    assert signed is not None and signed.valid and signed.synthetic
    assert get_json(server, "/api/ws/w1/video/side_by_side")[0] == 404
    assert get_json(server, "/api/ws/w1/video/other")[0] == 404


# ---- jobs ------------------------------------------------------------------------------------
def _nice_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[16])


def _wait_state(jobs: JobManager, job_id: str, states: tuple[str, ...], timeout: float = 20) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs.tick()
        job = jobs.get(job_id)
        if job.state in states:
            return job
        time.sleep(0.05)
    job = jobs.get(job_id)
    raise AssertionError(f"job {job_id} is {job.state}, wanted {states}: {job.to_json()}")


def _wait_output(log: Path, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.is_file() and text in log.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {log}")


def test_job_queue_stop_resume_and_restart(tmp_path: Path, env: dict[str, Path]) -> None:
    state = tmp_path / "state"
    roots = [tmp_path / "w1", tmp_path / "w2"]
    for r in roots:
        r.mkdir()
    outcomes: list[str] = []

    def outcome(job: Job) -> Any:
        outcomes.append(job.id)
        return "done"

    jobs = JobManager(state, command=standin_command(env["script"], 30), outcome=outcome, nice=10)
    first = jobs.submit("w1", roots[0], ["train"])
    second = jobs.submit("w2", roots[1], [])  # the whole chain trains too: it waits
    assert first.state == "running" and second.state == "queued"
    assert _nice_of(first.pid or 0) == 10
    with pytest.raises(Exception, match="already has a running job"):
        jobs.submit("w1", roots[0], ["extract"])
    _wait_output(Path(first.log), "working")
    # stop = SIGINT to the process group; the job saves and exits 130
    jobs.stop(first.id)
    job = _wait_state(jobs, first.id, ("stopped", "failed"))
    assert job.state == "stopped" and job.returncode == 130
    assert "stopping: saved" in Path(job.log).read_text()
    # the training slot is free: the queued job starts
    second = _wait_state(jobs, second.id, ("running",))
    resumed = jobs.resume(first.id)
    assert resumed.state == "queued" and resumed.stages == ["train"]
    # one manager per state dir; a new one (server restarted) adopts the running job, the queued one waits
    with pytest.raises(Exception, match="another faceloom UI"):
        JobManager(state)
    jobs.close()
    jobs2 = JobManager(state, command=standin_command(env["script"], 30), outcome=outcome)
    assert jobs2.get(second.id).state == "running" and jobs2.get(resumed.id).state == "queued"
    # it ended while the manager was not its parent: the outcome comes from the callback
    os.killpg(second.pid or 0, signal.SIGKILL)
    job = _wait_state(jobs2, second.id, ("done", "stopped", "failed"))
    assert job.state == "done" and second.id in outcomes
    resumed = _wait_state(jobs2, resumed.id, ("running",))
    _wait_output(Path(resumed.log), "working")
    jobs2.stop(resumed.id)
    _wait_state(jobs2, resumed.id, ("stopped",))
    saved = json.loads((state / "jobs.json").read_text())
    assert {j["id"] for j in saved["jobs"]} >= {first.id, second.id, resumed.id}
    with pytest.raises(Exception, match="nothing to stop"):
        jobs2.stop(first.id)
    jobs2.close()


def test_stop_works_when_the_server_ignores_sigint(tmp_path: Path, env: dict[str, Path]) -> None:
    """A server started as a background job of a shell script has SIGINT ignored; its jobs must not."""
    (tmp_path / "w").mkdir()
    jobs = JobManager(tmp_path / "state", command=standin_command(env["script"], 30))
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        job = jobs.submit("w", tmp_path / "w", ["train"])
    finally:
        signal.signal(signal.SIGINT, previous)
    _wait_output(Path(job.log), "working")
    jobs.stop(job.id)
    job = _wait_state(jobs, job.id, ("stopped", "failed", "done"), timeout=20)
    jobs.close()
    assert job.state == "stopped" and job.returncode == 130


def test_job_failure_is_reported(tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text("import sys\nprint('error: no input for person B')\nsys.exit(2)\n")
    jobs = JobManager(tmp_path / "state", command=lambda job: [sys.executable, str(script)])
    (tmp_path / "w").mkdir()
    job = jobs.submit("w", tmp_path / "w", ["extract"])
    job = jobs.wait(job.id, 20)
    jobs.close()
    assert job.state == "failed" and job.returncode == 2 and job.error == "no input for person B"


def test_cli_ui_prints_url_and_serves(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "faceloom", "ui", "--port", "0", "--workspaces", str(tmp_path / "w")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As from a terminal: a test run started in the background of a shell script has SIGINT
        # ignored, the child would inherit that, and Python then never turns Ctrl-C into an exception.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        url = None
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            m = re.search(r"open (http://127\.0\.0\.1:(\d+)/)", line)
            if m:
                url, port = m.group(1), int(m.group(2))
                break
            if not line and proc.poll() is not None:
                break
        assert url is not None, "no URL printed"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/info")
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["version"]
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
    assert proc.returncode == 0, f"Ctrl-C did not stop the UI cleanly (rc {proc.returncode}): {rest[-2000:]}"
    assert "UI stopped" in rest
