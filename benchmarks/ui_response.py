"""Page and API response times of the web UI while a training job uses every core; prints JSON.

Starts `faceloom ui` as its own process (as a user would), makes a workspace through the API from
the real clips (../shared/data or $FACELOOM_TEST_DATA), runs extract as a job, then starts a
training job (a `faceloom run --only train` process at niceness 10, torch on all cores) and,
while it trains, requests what the page polls: the page itself, app.js, the workspace state, the
job list, the job log, the loss log, the training preview and the face grid, one request every
``--interval`` seconds, round robin. The same requests are timed with no job running first, as a
baseline. Finally it stops the job (SIGINT: training saves and exits) and times how long that took.

Then, still while it trains, a load test: ``--load-clients`` clients (10 and 50 by default), each
polling ``/api/info`` every ``--load-interval`` seconds (0.1: ten times as often as the page polls)
over a new connection per request, for ``--load-seconds``; per client count: requests, errors,
p50 / p99 / max latency. With ``--load-interval 0`` they ask as fast as they can, which measures
throughput (latency is then about clients / throughput).

Targets: every page request under 1 s during training; with 50 clients polling, p99 under 50 ms and
no errors.

Usage: python benchmarks/ui_response.py [--model loom] [--seconds 60] [--interval 0.2] [--nice 10]
       [--load-clients 10,50] [--load-seconds 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))


class Client:
    def __init__(self, port: int) -> None:
        self.port = port

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"X-Faceloom": "1"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        t0 = time.perf_counter()
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        dt = time.perf_counter() - t0
        conn.close()
        return resp.status, payload, dt

    def json(self, method: str, path: str, body: Any = None) -> Any:
        status, payload, _ = self.call(method, path, body)
        if status >= 400:
            raise RuntimeError(f"{method} {path}: {status} {payload[:300]!r}")
        return json.loads(payload)


def start_ui(workspaces: Path, allowed: Path, nice: int) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, "-m", "faceloom", "ui", "--port", "0", "--workspaces", str(workspaces)]
    proc = subprocess.Popen(
        [*cmd, "--allow", str(allowed), "--nice", str(nice)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"open http://127\.0\.0\.1:(\d+)/", line)
        if m:
            return proc, int(m.group(1))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("faceloom ui did not print its URL")


def wait_job(client: Client, job_id: str, states: tuple[str, ...], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job in client.json("GET", "/api/jobs")["jobs"]:
            if job["id"] == job_id and job["state"] in states:
                return dict(job)
        time.sleep(0.5)
    raise RuntimeError(f"job {job_id} did not reach {states} in {timeout} s")


def routes(client: Client, name: str, job_id: str) -> list[str]:
    ws = client.json("GET", f"/api/ws/{name}")
    out = [
        "/",
        "/static/app.js",
        f"/api/ws/{name}",
        "/api/jobs",
        f"/api/jobs/{job_id}/log",
        f"/api/ws/{name}/trainlog",
        f"/api/ws/{name}/faces/a",
        "/api/workspaces",
    ]
    if ws.get("preview"):
        out.append(f"/files/ws/{name}/{ws['preview']}")
    return out


def measure(client: Client, paths: list[str], seconds: float, interval: float) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {p: [] for p in paths}
    deadline = time.monotonic() + seconds
    k = 0
    while time.monotonic() < deadline:
        path = paths[k % len(paths)]
        status, _, dt = client.call("GET", path)
        if status == 200:
            times[path].append(dt)
        k += 1
        time.sleep(interval)
    return times


def summary(times: dict[str, list[float]]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, Any]:
        if not values:
            return {"n": 0}
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return {
            "n": len(values),
            "median_ms": round(1000 * statistics.median(values), 1),
            "p95_ms": round(1000 * p95, 1),
            "max_ms": round(1000 * max(values), 1),
        }

    everything = [v for vs in times.values() for v in vs]
    key = re.compile(r"/api/jobs/[^/]+/log")
    return {
        "all": {
            **stats(everything),
            "under_1s": round(sum(v < 1.0 for v in everything) / max(len(everything), 1), 4),
        },
        "by_route": {key.sub("/api/jobs/ID/log", p): stats(v) for p, v in times.items()},
    }


def load(port: int, clients: int, seconds: float, interval: float = 0.1) -> dict[str, Any]:
    """``clients`` threads polling /api/info for ``seconds``, each waiting ``interval`` between two
    requests (0: as fast as it can), with a new connection per request."""
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        mine: list[float] = []
        bad: list[str] = []
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/api/info")
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status != 200:
                    bad.append(f"HTTP {resp.status}")
                    continue
            except OSError as exc:
                bad.append(type(exc).__name__)
                continue
            mine.append(time.perf_counter() - t0)
            if interval:
                time.sleep(interval)
        with lock:
            times.extend(mine)
            errors.extend(bad)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ordered = sorted(times)

    def pct(q: float) -> float:
        return (
            round(1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1) if ordered else 0.0
        )

    return {
        "clients": clients,
        "interval_s": interval,
        "seconds": seconds,
        "requests": len(times),
        "requests_per_s": round(len(times) / seconds, 1),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "max_ms": round(1000 * ordered[-1], 1) if ordered else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="loom", choices=["lite", "original", "loom"])
    parser.add_argument("--seconds", type=float, default=60.0, help="measuring time during training")
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.2, help="pause between two requests")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the job (the UI's default is 10)")
    parser.add_argument("--load-clients", default="10,50", help="client counts of the /api/info load test")
    parser.add_argument("--load-seconds", type=float, default=20.0)
    parser.add_argument("--load-interval", type=float, default=0.1, help="pause of each polling client")
    args = parser.parse_args()
    load_clients = [int(n) for n in args.load_clients.split(",") if n.strip()]

    env_data = os.environ.get("FACELOOM_TEST_DATA")
    data = Path(env_data) if env_data else REPO.parent / "shared" / "data"
    if not (data / "grid").is_dir():
        sys.exit(f"no test clips at {data}")
    grid = sorted((data / "grid").glob("*.mpg"))
    crema = sorted((data / "crema-d").glob("*.flv"))

    with tempfile.TemporaryDirectory(prefix="faceloom-ui-bench-") as tmp:
        workspaces = Path(tmp) / "workspaces"
        proc, port = start_ui(workspaces, data, args.nice)
        client = Client(port)
        try:
            name = "bench"
            client.json("POST", "/api/workspaces", {"name": name, "model": args.model, "minutes": 60})
            client.json("POST", f"/api/ws/{name}/inputs", {"role": "a", "paths": [str(p) for p in grid[2:4]]})
            client.json("POST", f"/api/ws/{name}/inputs", {"role": "b", "paths": [str(p) for p in crema]})
            client.json("POST", f"/api/ws/{name}/settings", {"extract": {"every_n": 2}})
            t0 = time.monotonic()
            job = client.json("POST", f"/api/ws/{name}/run", {"stages": ["extract"]})["job"]
            wait_job(client, job["id"], ("done",), 600)
            extract_s = time.monotonic() - t0

            paths = routes(client, name, job["id"])
            baseline = measure(client, paths, args.baseline_seconds, args.interval)

            job = client.json("POST", f"/api/ws/{name}/run", {"stages": ["train"]})["job"]
            # measure once the trainer is past its start-up and steps are being logged
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not client.json("GET", f"/api/ws/{name}/trainlog")["rows"]:
                time.sleep(1)
            paths = routes(client, name, job["id"])
            load0 = os.getloadavg()[0]
            during = measure(client, paths, args.seconds, args.interval)
            load1 = os.getloadavg()[0]
            loads = [load(port, n, args.load_seconds, args.load_interval) for n in load_clients]
            rows = client.json("GET", f"/api/ws/{name}/trainlog")["rows"]

            t_stop = time.monotonic()
            client.json("POST", f"/api/jobs/{job['id']}/stop")
            stopped = wait_job(client, job["id"], ("stopped", "failed", "done"), 120)
            stop_s = time.monotonic() - t_stop
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    during_summary = summary(during)
    print(
        json.dumps(
            {
                "benchmark": "ui_response",
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "model": args.model,
                "job_nice": args.nice,
                "interval_s": args.interval,
                "extract_job_s": round(extract_s, 1),
                "idle": summary(baseline),
                "during_training": during_summary,
                "training": {
                    "steps_logged": int(rows[-1][0]) if rows else 0,
                    "loadavg_1min": [round(load0, 2), round(load1, 2)],
                },
                "stop": {
                    "state": stopped["state"],
                    "seconds": round(stop_s, 1),
                    "returncode": stopped["returncode"],
                },
                "load_during_training": loads,
                "target_under_1s_met": during_summary["all"].get("max_ms", 1e9) < 1000,
                "target_load_p99_under_50ms_met": all(
                    r["p99_ms"] < 50 and r["errors"] == 0 for r in loads if r["clients"] >= 50
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
