"""The web UI in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium).

It creates a workspace, picks the clips of ../shared/data through the allowed-folder picker, runs a
tiny chain (lite, 20 iterations, every 3rd frame) to the end as a real `faceloom run` job, finds
the result video playing on the page, and removes a face in the grid. A screenshot of each main
screen goes to test-artifacts/ui/.

Without chromium or chromedriver (apt-get install chromium chromium-driver) it is skipped, except
under CI=true, where it fails.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from faceloom.ui.server import UIConfig, UIServer, running_server

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "ui"
CHAIN_TIMEOUT_S = 240


def _browser_paths() -> tuple[str, str]:
    chromium = (
        os.environ.get("FACELOOM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    driver = os.environ.get("FACELOOM_CHROMEDRIVER") or shutil.which("chromedriver")
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    if not chromium:
        missing.append("chromium")
    if not driver:
        missing.append("chromedriver")
    if missing:
        reason = f"browser tests need {', '.join(missing)} (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    assert chromium and driver
    return chromium, driver


def _chromium(extra: tuple[str, ...] = ()) -> Any:
    chromium, chromedriver = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1400",
        "--mute-audio",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        *extra,
    ):
        options.add_argument(arg)
    d = webdriver.Chrome(service=Service(chromedriver), options=options)
    d.set_page_load_timeout(60)
    return d


@pytest.fixture
def driver() -> Iterator[Any]:
    d = _chromium()
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture
def ui(tmp_path: Path, data: Path) -> Iterator[UIServer]:
    config = UIConfig(workspaces=tmp_path / "workspaces", allowed=[data], port=0)
    with running_server(config) as server:
        yield server
        for job in server.app.jobs.jobs():  # leave no job running behind the test
            if job.state in ("running", "stopping", "queued"):
                server.app.jobs.stop(job.id)


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 30.0, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # the element may be re-rendered between two looks
            last_exc = exc
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}" + (f" ({last_exc})" if last_exc else ""))


def shot(d: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    d.execute_script("window.scrollTo(0, 0)")
    d.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def test_whole_workflow_in_chromium(driver: Any, ui: UIServer, data: Path) -> None:
    from selenium.webdriver.common.by import By

    d = driver

    def css(sel: str) -> Any:
        return d.find_element(By.CSS_SELECTOR, sel)

    def click(what: str, sel: str) -> None:
        """Find ``sel`` and click it, finding it again if the page redrew it in between."""

        def once() -> bool:
            css(sel).click()
            return True

        wait_for(what, once)

    def tab(name: str) -> None:
        click(f"the {name} tab", f'#ws-tabs button[data-tab="{name}"]')

    def pick(folder: str, names: list[str], button: str) -> None:
        """In the allowed-folder picker: open ``folder``, tick ``names``, press ``button``."""
        click("the top crumb", "#browse-crumbs a")  # back to the top of the allowed folder
        click(f"folder {folder}", f'#browse-list li[data-dir="{folder}"]')
        for name in names:
            box = f'.browse-file[data-name="{name}"]'
            click(name, box)
            wait_for(f"{name} ticked", lambda: css(box).is_selected())  # noqa: B023
        css(button).click()

    # ---- the workspaces screen: create one
    d.get(ui.url)
    wait_for("the create form", lambda: css("#view-home").is_displayed())
    shot(d, "01-workspaces")
    css("#new-name").send_keys("tiny")
    d.execute_script("document.querySelector('#new-model').value = 'lite'")
    css("#new-iterations").send_keys("20")
    css("#create-btn").click()
    wait_for("the workspace page", lambda: css("#view-ws").is_displayed() and css("#ws-name").text == "tiny")

    # ---- inputs from the allowed folder: A and the target from GRID, B from CREMA-D
    grid_clip = "bbaf2n.mpg"
    crema = sorted(p.name for p in (data / "crema-d").glob("*.flv"))[:2]
    pick("grid", [grid_clip], "#add-a")
    wait_for("A's input", lambda: grid_clip in css("#inputs-a").text)
    pick("grid", [grid_clip], "#add-target")
    wait_for("the target", lambda: grid_clip in css("#inputs-target").text)
    pick("crema-d", crema, "#add-b")
    wait_for("B's inputs", lambda: all(n in css("#inputs-b").text for n in crema))
    assert css("#inputs-error").text == ""
    # with A and B given, the draft became a real workspace
    wait_for("the stages", lambda: css("#stage-extract").get_attribute("data-state") == "pending")
    assert (Path(ui.app.config.workspaces) / "tiny" / "faceloom.toml").is_file()
    shot(d, "02-inputs")

    # ---- settings: every 3rd frame, to keep the chain tiny
    tab("settings")
    field = wait_for("the every_n setting", lambda: css('[data-setting="extract.every_n"]'))
    field.clear()
    field.send_keys("3")
    css("#settings-form button[type=submit]").click()
    wait_for("saved", lambda: css("#settings-status").text == "saved")
    shot(d, "03-settings")

    # ---- run the whole chain: the consent rule comes first
    tab("run")
    css("#run-all").click()
    wait_for("the consent dialog", lambda: css("#consent-modal").is_displayed())
    assert "consent" in css("#consent-text").text
    assert css("#consent-ok").get_attribute("disabled") is not None
    shot(d, "04-consent")
    css("#consent-check").click()
    css("#consent-ok").click()

    def states() -> dict[str, str]:
        """The job's and each stage's state as the page shows them (read in one go: it re-renders)."""
        return dict(
            d.execute_script(
                "const out = {job: document.querySelector('#job-state').dataset.state || ''};"
                "for (const s of document.querySelectorAll('#stages .stage')) out[s.id] = s.dataset.state;"
                "return out;"
            )
        )

    wait_for("the job to start", lambda: states()["job"] in ("running", "done"))
    seen_training = False
    deadline = time.monotonic() + CHAIN_TIMEOUT_S
    now = states()
    while time.monotonic() < deadline:
        now = states()
        if now["job"] in ("done", "failed", "stopped"):
            break
        if not seen_training and now.get("stage-train") == "running":
            seen_training = True
            time.sleep(1.5)
            shot(d, "05-training")
        time.sleep(0.5)
    log = css("#job-log").text
    assert now["job"] == "done", f"job ended {now}: {css('#job-state').text}\n{log[-3000:]}"
    for stage in ("extract", "analyze", "train", "convert", "eval"):
        assert now[f"stage-{stage}"] == "done", now
    wait_for("the training preview", lambda: css("#train-preview").is_displayed())
    wait_for("the loss legend", lambda: "loss_a" in css("#loss-legend").text)
    shot(d, "06-run-done")

    # ---- coverage and eval numbers on the page
    tab("analysis")
    wait_for(
        "the coverage summary",
        lambda: "coverage" in css("#coverage").text.lower() or "warning" in css("#coverage").text,
    )
    wait_for(
        "the eval numbers", lambda: "identity" in css("#eval").text and "reconstruction" in css("#eval").text
    )
    assert "labelled synthetic" in css("#eval").text
    shot(d, "07-coverage-eval")

    # ---- the result video plays in the page (H.264/AAC copy) and can be downloaded
    tab("result")
    video = wait_for("the result video", lambda: css("#result-video").is_displayed() and css("#result-video"))
    ready = wait_for(
        "the video to load",
        lambda: d.execute_script(
            "const v = arguments[0];"
            "return v.error ? 'error ' + v.error.code : (v.readyState >= 2 ? v.duration : 0);",
            video,
        ),
        timeout=30,
    )
    assert not str(ready).startswith("error"), ready
    assert float(ready) > 2.0  # the GRID clip is 3 s long
    wait_for("the side-by-side video", lambda: css("#sbs-video").is_displayed())
    href = css("#result-download").get_attribute("href")
    assert href.endswith("/files/ws/tiny/output/swapped.mp4?download=1")
    d.execute_script("arguments[0].currentTime = 1.0;", video)
    wait_for(
        "both videos to show a frame",
        lambda: d.execute_script(
            "return [...document.querySelectorAll('#tab-result video')]"
            ".every(v => !v.seeking && v.readyState >= 2);"
        ),
    )
    shot(d, "08-result")

    # ---- the face grid: remove a bad face
    tab("faces")
    wait_for("the face grid", lambda: len(d.find_elements(By.CSS_SELECTOR, "#faces-grid .face img")) > 5)
    total = int(css("#faces-status").text.split()[0])
    shot(d, "09-faces")
    d.find_elements(By.CSS_SELECTOR, "#faces-grid .face")[0].click()
    css("#faces-remove").click()
    wait_for(
        "the removal", lambda: css("#faces-status").text.startswith(f"removed 1; {total - 1} faces of A")
    )
    assert len(d.find_elements(By.CSS_SELECTOR, "#faces-grid .face")) == total - 1

    # ---- back on the list, the workspace shows its finished job
    d.get(ui.url)
    wait_for("the list", lambda: css('a.ws-link[data-name="tiny"]'))
    wait_for("the done badge", lambda: "done" in css("#ws-table tbody").text)
    shot(d, "10-workspaces-after")
    console = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
    assert console == [], console


def _y4m(frames: list[Any], path: Path, fps: int = 25) -> Path:
    """A raw YUV4MPEG2 clip: what Chromium's fake camera plays (in a loop)."""
    import av

    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    return path


def _best_match(shown: Any, frames: list[Any], far: Any) -> tuple[int, float]:
    """The source frame whose pixels away from the face are closest to ``shown``, and its PSNR there."""
    from faceloom.metrics import psnr

    scores = [psnr(f, shown, mask=far) for f in frames]
    k = max(range(len(frames)), key=lambda i: scores[i])
    return k, scores[k]


def test_live_screen_swaps_the_camera(
    ui: UIServer, grid: dict[str, Path], trained_lite: Path, tmp_path: Path
) -> None:
    """A fake camera plays GRID g3 (person A of the session's model) into the Live screen: swapped
    frames come back over the WebSocket, the face changed, the background did not."""
    import base64

    import cv2
    import numpy as np
    from selenium.webdriver.common.by import By

    from faceloom.faces.detect import create_detector
    from faceloom.workspace.workspace import Workspace
    from tests.media_helpers import read_frames

    frames = read_frames(grid["g3b"])
    camera = _y4m(frames, tmp_path / "camera.y4m")
    root = Path(ui.app.config.workspaces) / "live"
    ws = Workspace.create(root, [str(grid["g3"])], [str(grid["g3b"])], None, model="lite")
    shutil.copytree(trained_lite, ws.model_dir)
    d = _chromium(
        (
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}",
        )
    )
    try:

        def css(sel: str) -> Any:
            return d.find_element(By.CSS_SELECTOR, sel)

        d.get(f"{ui.url}#/ws/live/live")
        wait_for(
            "the Live screen", lambda: css("#tab-live").is_displayed() and css("#ws-name").text == "live"
        )
        wait_for("the workspace state", lambda: d.execute_script("return ui.wsData !== null"))
        css("#live-start").click()
        wait_for("the consent dialog", lambda: css("#consent-modal").is_displayed())
        css("#consent-check").click()
        css("#consent-ok").click()
        wait_for(
            "30 swapped frames", lambda: int(css("#live-out").get_attribute("data-frames")) >= 30, timeout=120
        )
        wait_for(
            "the figures", lambda: float(css("#live-stats").get_attribute("data-fps") or 0) > 0, timeout=30
        )
        assert "frames/s" in css("#live-stats").text and css("#live-error").text == ""
        shot(d, "11-live")
        # The newest frame may still be decoding (no pixels yet): wait for one that has them.
        png = wait_for(
            "a decoded swapped frame",
            lambda: d.execute_script(
                "const img = document.querySelector('#live-out');"
                "if (!img.complete || !img.naturalWidth) return null;"
                "const c = document.createElement('canvas');"
                "c.width = img.naturalWidth; c.height = img.naturalHeight;"
                "c.getContext('2d').drawImage(img, 0, 0);"
                "return c.toDataURL('image/png');"
            ),
        )
        shown = cv2.imdecode(
            np.frombuffer(base64.b64decode(png.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR
        )
        shown = np.ascontiguousarray(shown[:, :, ::-1])
        assert shown.shape == frames[0].shape, shown.shape
        detector = create_detector("mediapipe")
        try:
            x0, y0, x1, y1 = (int(v) for v in detector.detect(frames[0])[0].bbox)
        finally:
            detector.close()
        h, w = shown.shape[:2]
        m = (x1 - x0) // 2 + 12
        far = np.ones((h, w), np.float32)
        far[max(0, y0 - m) : y1 + m, max(0, x0 - m) : x1 + m] = 0
        far[h - 40 :, : w // 2] = 0  # the visible label
        k, background_psnr = _best_match(shown, frames, far)
        assert background_psnr > 28.0, background_psnr  # two JPEGs and the watermark
        inner = (
            slice(y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 8),
            slice(x0 + (x1 - x0) // 5, x1 - (x1 - x0) // 5),
        )
        face_change = float(
            np.abs(shown[inner].astype(np.float32) - frames[k][inner].astype(np.float32)).mean()
        )
        assert face_change > 4.0, f"the face was not replaced ({face_change:.1f} grey levels)"
        cv2.imwrite(str(ARTIFACTS / "11-live-frame.png"), np.hstack([frames[k], shown])[:, :, ::-1])
        # a setting changed while running is taken, and the frames keep coming
        before = int(css("#live-out").get_attribute("data-frames"))
        d.execute_script(
            "const s = document.querySelector('#live-color');"
            "s.value = 'none'; s.dispatchEvent(new Event('change'));"
        )
        wait_for(
            "more frames",
            lambda: int(css("#live-out").get_attribute("data-frames")) > before + 10,
            timeout=30,
        )
        assert css("#live-error").text == ""
        css("#live-stop").click()
        wait_for("the stop", lambda: css("#live-start").is_displayed())
        console = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
        assert console == [], console
    finally:
        d.quit()
