"""Jobs of the web UI: each one a ``faceloom run`` in its own process, at low priority.

The UI never trains, extracts or converts in its own process. A job is::

    python -m faceloom run --workspace DIR [--only STAGE ...] [--iterations N | --minutes M]

at niceness 10, without ``--json``, so the log shows each stage's progress as it goes. It starts in
a new session (its own process group), stdout and stderr going to ``DIR/ui-logs/<job id>.log``. The
manager keeps every job in ``<state dir>/jobs.json`` (written atomically on every change), so closing the page
changes nothing and a restarted server finds its jobs again: a job still running is adopted (its
pid and the process start time checked, so a recycled pid is not mistaken for it), one that ended
meanwhile gets its outcome from the workspace's stage states.

Scheduling: at most ``max_training`` jobs that train run at once (1 by default; others wait in
the queue), at most ``max_jobs`` jobs in all, and one job per workspace (a second one for the same
workspace is refused while one is queued or running). Stop sends SIGINT to the job's process
group, which makes training save a checkpoint and exit; a second stop sends SIGTERM. Resume runs
the same stages again: finished stages are skipped by ``faceloom run`` and training continues
from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from faceloom.errors import FaceloomError
from faceloom.fsutil import atomic_write_text, ensure_dir

JobState = Literal["queued", "running", "stopping", "stopped", "done", "failed"]
ACTIVE: tuple[JobState, ...] = ("queued", "running", "stopping")
FINISHED: tuple[JobState, ...] = ("stopped", "done", "failed")
STATE_FILE = "jobs.json"
LOCK_FILE = ".lock"
LOG_DIR = "ui-logs"
KEEP_FINISHED = 200

OutcomeFn = Callable[["Job"], JobState]
"""How a job that ended unwatched (server down) went: usually read from the workspace's stages."""


@dataclass
class Job:
    id: str
    workspace: str
    root: str
    stages: list[str]
    args: list[str] = field(default_factory=list)
    state: JobState = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    pid: int | None = None
    proc_start: str | None = None
    returncode: int | None = None
    stop_requested: bool = False
    error: str | None = None
    log: str = ""

    @property
    def training(self) -> bool:
        """Whether the job trains: it names the train stage, or runs the whole chain."""
        return not self.stages or "train" in self.stages

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["training"] = self.training
        return out


class JobError(FaceloomError):
    """A job request that cannot be honoured (already running, unknown id, ...)."""


def _proc_start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of /proc/PID/stat), None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    rest = stat[stat.rfind(")") + 2 :].split()
    return rest[19] if len(rest) > 19 else None


def _alive(pid: int, start: str | None) -> bool:
    now = _proc_start_time(pid)
    if now is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        state = ""
    return state != "Z" and (start is None or now == start)


def default_command(job: Job) -> list[str]:
    cmd = [sys.executable, "-m", "faceloom", "run", "--workspace", job.root]
    for stage in job.stages:
        cmd += ["--only", stage]
    return [*cmd, *job.args]


class JobManager:
    """Queue, start, watch, stop and resume jobs; persisted in ``state_dir/jobs.json``.

    Args:
        state_dir: where ``jobs.json`` lives.
        max_training: jobs with a train stage that may run at the same time.
        max_jobs: jobs that may run at the same time in all.
        nice: niceness of the job processes (10: the page stays responsive while they use every core).
        command: builds a job's command line (tests swap in a stand-in).
        outcome: the state of a job that ended while no server watched it.
        poll_s: how often the watcher thread looks at the processes.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        max_training: int = 1,
        max_jobs: int = 2,
        nice: int = 10,
        command: Callable[[Job], list[str]] = default_command,
        outcome: OutcomeFn | None = None,
        poll_s: float = 0.5,
        env: dict[str, str] | None = None,
    ) -> None:
        self.state_dir = ensure_dir(state_dir)
        self.max_training = max(1, max_training)
        self.max_jobs = max(1, max_jobs)
        self.nice = nice
        self.command = command
        self.outcome = outcome
        self.poll_s = poll_s
        self.env = env
        self._lock = threading.RLock()
        self._children: set[str] = set()
        """Jobs this manager started (so it reaps them with waitpid); others are only watched."""
        self._jobs: dict[str, Job] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd = self._take_lock()
        self._load()

    def _take_lock(self) -> int:
        """One manager per state dir: two would both start the same queued job."""
        path = self.state_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise JobError(
                f"another faceloom UI uses {self.state_dir} (its jobs.json); stop it first, "
                "or give this one other workspaces"
            ) from None
        return fd

    # ---- persistence -------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    def _load(self) -> None:
        try:
            raw = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return
        except (OSError, json.JSONDecodeError):
            # A damaged state file: keep it for a look, start empty.
            with contextlib.suppress(OSError):
                self.state_file.replace(self.state_file.with_suffix(".damaged.json"))
            return
        known = set(Job.__dataclass_fields__)
        for item in raw.get("jobs", []):
            job = Job(**{k: v for k, v in item.items() if k in known})
            if job.state in ("running", "stopping") and not (job.pid and _alive(job.pid, job.proc_start)):
                self._finish_unwatched(job)
            self._jobs[job.id] = job

    def _save(self) -> None:
        jobs = sorted(self._jobs.values(), key=lambda j: j.created)
        finished = [j for j in jobs if j.state in FINISHED]
        drop = {j.id for j in finished[: max(0, len(finished) - KEEP_FINISHED)]}
        self._jobs = {j.id: j for j in jobs if j.id not in drop}
        data = {"version": 1, "jobs": [j.to_json() for j in self._jobs.values()]}
        atomic_write_text(self.state_file, json.dumps(data, indent=1))

    def _finish_unwatched(self, job: Job) -> None:
        state: JobState = "stopped" if job.stop_requested else "failed"
        if self.outcome is not None:
            try:
                state = self.outcome(job)
            except Exception as exc:  # the workspace may be gone; say so rather than crash
                job.error = f"outcome unknown: {exc}"
        job.state = state
        job.finished = job.finished or time.time()

    # ---- the watcher ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the watcher thread (reaps finished jobs, starts queued ones)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="faceloom-ui-jobs", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop watching. Running jobs go on (they are in their own session); a new server adopts them."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            with contextlib.suppress(Exception):  # the watcher must not die on one odd job
                self.tick()

    def tick(self) -> None:
        """Reap jobs that ended and start queued ones where a slot is free."""
        with self._lock:
            changed = False
            for job in self._jobs.values():
                if job.state not in ("running", "stopping"):
                    continue
                if job.id in self._children and job.pid:
                    try:
                        pid, status = os.waitpid(job.pid, os.WNOHANG)
                    except ChildProcessError:  # reaped elsewhere: outcome unknown
                        pid, status = job.pid, -1
                    if pid == 0:
                        continue
                    self._children.discard(job.id)
                    rc = os.waitstatus_to_exitcode(status) if status >= 0 else -1
                    job.returncode = rc
                    job.finished = time.time()
                    if rc == 0:
                        job.state = "done"
                    elif job.stop_requested:  # asked to stop, and it did (130 after a clean save)
                        job.state = "stopped"
                    else:
                        job.state = "failed"
                        job.error = job.error or _last_error_line(Path(job.log)) or f"exit code {rc}"
                    changed = True
                elif not (job.pid and _alive(job.pid, job.proc_start)):
                    self._finish_unwatched(job)
                    changed = True
            changed = self._start_queued() or changed
            if changed:
                self._save()

    def _running(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.state in ("running", "stopping")]

    def _start_queued(self) -> bool:
        started = False
        for job in sorted(self._jobs.values(), key=lambda j: j.created):
            if job.state != "queued":
                continue
            running = self._running()
            if len(running) >= self.max_jobs:
                break
            if job.training and sum(j.training for j in running) >= self.max_training:
                continue
            self._launch(job)
            started = True
        return started

    def _launch(self, job: Job) -> None:
        """Start a job with posix_spawn: its own session, SIGINT/SIGTERM at their defaults, low priority.

        Not subprocess.Popen: a server started with SIGINT ignored (a background job of a shell
        script) would pass that on, and stop would do nothing; resetting it in the child needs
        ``preexec_fn``, which is unsafe in a threaded server. posix_spawn resets it without running
        Python code between fork and exec.
        """
        log = Path(job.log)
        cmd = self.command(job)
        exe = cmd[0] if os.path.isabs(cmd[0]) else shutil.which(cmd[0]) or cmd[0]
        try:
            ensure_dir(log.parent)
            with open(log, "ab") as fh:
                fh.write(f"$ {' '.join(cmd)}\n".encode())
            pid = os.posix_spawn(
                exe,
                cmd,
                self.env if self.env is not None else dict(os.environ),
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                ],
                setsid=True,  # own session and process group: stop signals reach all of it
                setsigdef=(signal.SIGINT, signal.SIGTERM, signal.SIGHUP),
                setsigmask=(),
            )
        except OSError as exc:
            job.state = "failed"
            job.error = f"cannot start the job: {exc}"
            job.finished = time.time()
            return
        if self.nice:
            # Set from here, not by a `nice` wrapper: posix_spawn returns once the child has exec'd,
            # so the job is at its niceness before it can start anything, and a reader never sees
            # the wrapper's moment at niceness 0.
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, pid, self.nice)
        self._children.add(job.id)
        job.pid = pid
        job.proc_start = _proc_start_time(pid)
        job.state = "running"
        job.started = time.time()

    # ---- the API -----------------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobError(f"no job {job_id!r}")
            return job

    def active_for(self, workspace: str) -> Job | None:
        with self._lock:
            for job in self._jobs.values():
                if job.workspace == workspace and job.state in ACTIVE:
                    return job
            return None

    def latest_for(self, workspace: str) -> Job | None:
        with self._lock:
            mine = [j for j in self._jobs.values() if j.workspace == workspace]
            return max(mine, key=lambda j: j.created) if mine else None

    def submit(self, workspace: str, root: Path, stages: Sequence[str], args: Sequence[str] = ()) -> Job:
        """Queue a job (it starts at once when a slot is free). Refused while the workspace has one."""
        with self._lock:
            busy = self.active_for(workspace)
            if busy is not None:
                raise JobError(f"workspace {workspace!r} already has a {busy.state} job ({busy.id})")
            job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
            job = Job(
                id=job_id,
                workspace=workspace,
                root=str(root),
                stages=list(stages),
                args=list(args),
                log=str(Path(root) / LOG_DIR / f"{job_id}.log"),
            )
            self._jobs[job.id] = job
            self._start_queued()
            self._save()
            return job

    def stop(self, job_id: str) -> Job:
        """Cancel a queued job; SIGINT a running one (training saves, then exits); SIGTERM if asked again."""
        with self._lock:
            job = self.get(job_id)
            if job.state == "queued":
                job.state = "stopped"
                job.stop_requested = True
                job.finished = time.time()
            elif job.state in ("running", "stopping") and job.pid:
                sig = signal.SIGTERM if job.state == "stopping" else signal.SIGINT
                job.stop_requested = True
                job.state = "stopping"
                if _alive(job.pid, job.proc_start):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(job.pid, sig)
            else:
                raise JobError(f"job {job_id} is {job.state}, nothing to stop")
            self._save()
            return job

    def resume(self, job_id: str) -> Job:
        """Run a stopped or failed job's stages again (finished stages are skipped by ``faceloom run``)."""
        with self._lock:
            job = self.get(job_id)
            if job.state not in ("stopped", "failed"):
                raise JobError(f"job {job_id} is {job.state}; only a stopped or failed job can be resumed")
            return self.submit(job.workspace, Path(job.root), job.stages, job.args)

    def wait(self, job_id: str, timeout: float) -> Job:
        """Block until the job has finished (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while True:
            self.tick()
            job = self.get(job_id)
            if job.state in FINISHED or time.monotonic() > deadline:
                return job
            time.sleep(0.1)


def _last_error_line(log: Path) -> str | None:
    """The last ``error: ...`` line of a job log, the one line the CLI prints for a failure."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            tail = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(tail):
        if line.startswith("error:"):
            return line[len("error:") :].strip()
    return None


def log_tail(path: Path, max_bytes: int = 8192) -> str:
    """The end of a job log (carriage-return progress bars reduced to their last state)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    if size > max_bytes:
        lines = lines[1:]
    return "\n".join(lines)
