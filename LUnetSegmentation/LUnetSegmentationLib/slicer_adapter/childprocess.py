"""The Slicer module's side of out-of-process inference; Qt-free, so it is tested here with a real
child process (any Python with the requirements stands in for PythonSlicer).

    runner = Runner(python="/path/to/PythonSlicer")
    runner.start(volumeNode, segmentationNode=None, model=None, device="auto", roiNode=None)
    ...                                # a QTimer on the main thread, every 100 ms:
    status = runner.poll()             # never blocks: reads the child's new progress lines
    if status.state == "done":
        segmentationNode = runner.apply()   # main thread: segments + provenance
    runner.cancel()                    # kills the child; nothing in the scene changes
    runner.shutdown()                  # module cleanup / scene close: child gone, GPU memory freed

The child is `worker.py` (protocol in its docstring). Its stdout goes to a file in the run's
temporary folder and is read from the last offset at each poll: no pipe to fill up, no reader
thread (which would need the GIL that Slicer's main thread holds), no blocking read. Requests go
to the child's stdin, one JSON line each; the child keeps the model loaded between requests, and
exits when its stdin closes (so it also goes when Slicer does).

MRML is touched only in `start` (read the volume and ROI) and `apply` (write segments), both on
the caller's thread; everything between runs in the child.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LIB_PARENT = Path(__file__).resolve().parents[2]  # the folder that holds LUnetSegmentationLib
STDERR_TAIL_BYTES = 4000
# The bootstrap puts the package's folder on sys.path itself, so the child does not depend on
# PYTHONPATH, which Slicer's launcher (PythonSlicer) sets up its own way on each platform.
BOOTSTRAP = "import sys; sys.path.insert(0, sys.argv[1]); from LUnetSegmentationLib.slicer_adapter.worker import main; sys.exit(main(sys.argv[2:]))"


class ChildError(RuntimeError):
    """The child failed; the message is the child's own (what is wrong and what to do)."""


# Windows process creation flags (the constants exist in subprocess only on Windows).
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000


def is_windows() -> bool:
    return sys.platform == "win32"


def _windows_short_path(path: str) -> str:
    """The 8.3 short form of an existing path (ASCII where 8.3 names are enabled), or `path`."""
    import ctypes

    size = ctypes.windll.kernel32.GetShortPathNameW(str(path), None, 0)
    if not size:
        return str(path)
    buffer = ctypes.create_unicode_buffer(size)
    if not ctypes.windll.kernel32.GetShortPathNameW(str(path), buffer, size):
        return str(path)
    return buffer.value


def child_path(path) -> str:
    """A path as the child is given it. On Windows a non-ASCII path (a user profile named
    "Jürgen", a per-user install under it) becomes its 8.3 short form: Slicer's Python
    (python-real, started by the PythonSlicer launcher) has no UTF-8 code-page manifest, unlike
    SlicerApp-real, so ITK's narrow-character file functions cannot open non-ASCII names there.
    Elsewhere (UTF-8 file systems) the path is returned unchanged."""
    path = str(path)
    if not is_windows() or path.isascii():
        return path
    return _windows_short_path(path)


def require_child_path(path, what: str) -> str:
    """child_path(path), refused with what to do when Windows has no ASCII form for it (8.3 names
    switched off on that drive): the child could not open it, and would fail later and obscurely."""
    converted = child_path(path)
    if is_windows() and not converted.isascii():
        raise ChildError(
            f"The {what} ({path}) has non-ASCII characters and Windows gives it no short (8.3) name, so Slicer's "
            "Python cannot open files there. "
            + ("Set the TEMP and TMP environment variables to a folder with an ASCII path (e.g. C:\\Temp) and restart Slicer."
               if what == "temporary folder" else
               "Install the extension (or add the module) under a folder whose path is ASCII only.")
        )
    return converted


def worker_command(python: str, lib_parent: Path = LIB_PARENT) -> list[str]:
    """The command line that starts a persistent worker with `python` (PythonSlicer in Slicer).
    The package folder goes through `child_path`, so the files the child finds from its own
    location (model cards, the template) have ASCII paths on Windows too."""
    return [str(python), "-c", BOOTSTRAP, require_child_path(lib_parent, "module folder")]


def process_options() -> dict:
    """Popen options: the worker in its own process group (so kill_tree reaches the Python the
    launcher starts) and, on Windows, without a console window (as Slicer's own
    launchConsoleProcess does: the worker lives as long as the scene, its window would too)."""
    if is_windows():
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    return {"start_new_session": True}


def parse_event_line(line: str):
    """One protocol line -> dict with an "event" key, or None for anything else (blank lines,
    partial or foreign output); fractions are clamped to 0..1."""
    line = line.strip()
    # Native code in the child may write to stdout without a newline; the worker keeps such
    # text off the protocol stream, and an event glued after it is still found here.
    start = line.find('{"event"')
    if start < 0:
        return None
    try:
        event = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return None
    if event["event"] == "progress":
        try:
            event["fraction"] = min(max(float(event.get("fraction", 0.0)), 0.0), 1.0)
        except (TypeError, ValueError):
            return None
        event["stage"] = str(event.get("stage", ""))
    return event


class EventFile:
    """Reads complete new lines appended to a file since the last read (never blocks)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self._partial = b""

    def read_events(self) -> list[dict]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for the next read
        events = [parse_event_line(line.decode("utf-8", "replace")) for line in lines]
        return [event for event in events if event is not None]


@dataclass
class ChildResult:
    """A finished run read back from the child's files."""

    labels: object  # sitk.Image, uint8, on the input's grid
    specs: list  # [pipeline.SegmentSpec]
    summary: dict  # summary.json as written by the worker

    @property
    def device(self) -> str:
        return str(self.summary.get("device", ""))

    @property
    def seconds(self) -> float:
        return float(self.summary.get("seconds", 0.0))

    @property
    def notes(self) -> list:
        return list(self.summary.get("notes", []))

    @property
    def warnings(self) -> list:
        return list(self.summary.get("warnings", []))

    @property
    def volumes(self) -> dict:
        return dict(self.summary.get("volumes_mm3", {}))

    @property
    def sideVolumes(self) -> dict:
        return dict(self.summary.get("side_volumes_mm3", {}))

    @property
    def details(self) -> dict:
        return dict(self.summary.get("details", {}))

    @property
    def model(self) -> dict:
        return dict(self.summary.get("model", {}))


def read_result(summary_path, expected_size=None) -> ChildResult:
    """Read summary.json and its labelmap; refuses files that do not fit (a clear ChildError)."""
    import SimpleITK as sitk

    from ..runtime.pipeline import SegmentSpec

    summary_path = Path(summary_path)
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as error:
        raise ChildError(f"The segmentation worker's summary {summary_path} cannot be read ({error}). Run again.") from None
    labels_path = summary_path.parent / summary.get("labels_file", "labels.nrrd")
    try:
        labels = sitk.ReadImage(str(labels_path))
    except RuntimeError as error:
        raise ChildError(f"The segmentation worker's labelmap {labels_path} cannot be read ({error}). Run again.") from None
    if expected_size is not None and tuple(labels.GetSize()) != tuple(expected_size):
        raise ChildError(
            f"The worker's labelmap is {labels.GetSize()} voxels but the input is {tuple(expected_size)}; nothing was "
            "written. Run again; if it persists, report it."
        )
    specs = [
        SegmentSpec(int(row["value"]), str(row["structure"]), tuple(float(c) for c in row["color"]), row.get("side"))
        for row in summary.get("labels", [])
    ]
    return ChildResult(labels, specs, summary)


def kill_tree(process: subprocess.Popen) -> None:
    """Kill the child and whatever it started. PythonSlicer is a launcher that starts the real
    Python as its own child, so killing the launcher alone would leave the work running: the
    worker is started in its own process group (POSIX) or killed with taskkill /T (Windows)."""
    if process.poll() is not None:
        return
    if is_windows():
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False,
                       creationflags=CREATE_NO_WINDOW)
    else:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


class Worker:
    """A persistent worker process: started once, requests written to its stdin, events read
    from its stdout file."""

    def __init__(self, python: str, folder: Path, lib_parent: Path = LIB_PARENT, env: dict | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.events_path = self.folder / "worker-events.jsonl"
        self.stderr_path = self.folder / "worker-stderr.log"
        self.command = worker_command(python, lib_parent)
        environment = dict(os.environ if env is None else env)
        environment["PYTHONUNBUFFERED"] = "1"
        environment["PYTHONIOENCODING"] = "utf-8"
        # What Slicer 5.12's PythonSlicer launcher sets itself (SuperBuild/External_python.cmake);
        # on 5.8 it makes Python's own file and text encoding UTF-8 in the child too.
        environment["PYTHONUTF8"] = "1"
        with open(self.events_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=stdout, stderr=stderr, env=environment, **process_options()
            )
        self.events = EventFile(self.events_path)
        self.ready = None  # the "ready" event once seen (pid, Python version)
        self.exiting = False  # it said it exits (idle with a CUDA context); a new one takes the next request

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, request: dict) -> None:
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode("utf-8"))
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise ChildError(f"The segmentation worker stopped before it could take the request ({error}).{self.stderr_hint()}") from None

    def read_events(self) -> list[dict]:
        events = self.events.read_events()
        for event in events:
            if event["event"] == "ready":
                self.ready = event
            elif event["event"] == "exiting":
                self.exiting = True
        return events

    def stderr_tail(self) -> str:
        try:
            with open(self.stderr_path, "rb") as handle:
                handle.seek(max(0, os.path.getsize(self.stderr_path) - STDERR_TAIL_BYTES))
                return handle.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def stderr_hint(self) -> str:
        tail = self.stderr_tail()
        return f" Its last output: {tail.splitlines()[-1]}" if tail else ""

    def kill(self) -> None:
        kill_tree(self.process)
        self.close_stdin()

    def close_stdin(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the worker to exit (stdin closed), kill it if it has not within `timeout`."""
        self.close_stdin()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(self.process)


@dataclass
class Status:
    """What the panel shows: state is "idle", "running", "done", "failed" or "cancelled"."""

    state: str = "idle"
    fraction: float = 0.0
    stage: str = ""
    message: str = ""
    details: str = ""
    elapsed: float = 0.0


@dataclass
class ActiveRun:
    id: str
    volumeNode: object
    segmentationNode: object
    roiNode: object
    indexBox: object
    inputSize: tuple
    folder: Path
    started: float = field(default_factory=time.time)
    status: Status = field(default_factory=lambda: Status("running"))
    summaryPath: Path | None = None
    result: ChildResult | None = None
    request: dict = field(default_factory=dict)
    accepted: bool = False  # the worker said "started" for it


class Runner:
    """One segmentation at a time through a persistent worker (see the module docstring)."""

    def __init__(self, python: str | None = None, lib_parent: Path = LIB_PARENT, keep_worker: bool = True, env: dict | None = None):
        self.python = python or sys.executable
        self.lib_parent = lib_parent
        self.keep_worker = keep_worker
        self.env = env
        self.worker: Worker | None = None
        self.run: ActiveRun | None = None
        self._folder = None
        self._ids = itertools.count(1)

    @property
    def busy(self) -> bool:
        return self.run is not None and self.run.status.state == "running"

    def _temporary_folder(self) -> Path:
        if self._folder is None or not Path(self._folder).is_dir():
            self._folder = Path(tempfile.mkdtemp(prefix="LUnetSegmentation-"))
        return Path(self._folder)

    def _ensure_worker(self) -> Worker:
        if self.worker is not None and self.worker.alive:
            self.worker.read_events()  # between runs only "ready" or "exiting" can be there
            if self.worker.exiting:
                self.worker.stop()
        if self.worker is None or not self.worker.alive:
            self.worker = Worker(self.python, self._temporary_folder() / f"worker-{next(self._ids)}", self.lib_parent, self.env)
        return self.worker

    def start(self, volumeNode, segmentationNode=None, model=None, device="auto", roiNode=None) -> ActiveRun:
        """Check the inputs, write the volume for the child, send the request; returns at once.
        Raises RuntimeError while a run is going (one at a time) and InputError for bad input,
        before anything is started or changed."""
        import SimpleITK as sitk

        from . import mrml

        if self.busy:
            raise RuntimeError("A segmentation is already running; wait for it to finish or cancel it first.")
        # Checked here, so bad input is refused before a child is started; the child is told
        # the entry check ran ("checked") and does not run it again.
        image, indexBox, warnings = mrml.runInput(volumeNode, segmentationNode, roiNode)
        run_id = f"run-{next(self._ids)}"
        folder = self._temporary_folder() / run_id
        folder.mkdir(parents=True)
        (folder / "output").mkdir()
        try:
            child_folder = require_child_path(folder, "temporary folder")  # before any work
        except ChildError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        inputPath = folder / "input.nrrd"
        # Slicer's main process (SlicerApp-real) has the UTF-8 code-page manifest, so it writes any
        # path; the child, which lacks it, is given child_path()s.
        sitk.WriteImage(image, str(inputPath), False)  # uncompressed: written and read fastest
        worker = self._ensure_worker()
        request = {
            "id": run_id,
            "input": os.path.join(child_folder, "input.nrrd"),
            "output_dir": os.path.join(child_folder, "output"),
            "model": None if model is None else str(model),
            "device": device,
            "index_box": None if indexBox is None else [list(map(int, indexBox[0])), list(map(int, indexBox[1]))],
            "name": volumeNode.GetName(),
            "checked": warnings,
        }
        self.run = ActiveRun(run_id, volumeNode, segmentationNode, roiNode, indexBox, tuple(image.GetSize()), folder, request=request)
        try:
            worker.send(request)
        except ChildError:
            self.run = None
            self.worker = None
            raise
        return self.run

    def poll(self) -> Status:
        """Read what the child reported since the last poll; never blocks."""
        run = self.run
        if run is None:
            return Status()
        status = run.status
        if status.state != "running":
            return status
        status.elapsed = time.time() - run.started
        removed = self._removed_node(run)
        if removed:
            # Nothing could be written for it: stop the child now rather than let it compute to
            # the end, and let the caller discard the run (its temporary folder goes too).
            if self.worker is not None:
                self.worker.kill()
                self.worker = None
            status.state = "failed"
            status.message = f"The {removed} was removed from the scene while it was being segmented; the run was stopped. Nothing was changed."
            return status
        worker = self.worker
        for event in worker.read_events() if worker is not None else []:
            if event.get("id") not in (run.id, "") and event["event"] != "ready":
                continue  # a line about an earlier (cancelled) request
            kind = event["event"]
            if kind == "started":
                run.accepted = True
            elif kind == "progress":
                status.fraction = max(status.fraction, event["fraction"])
                status.stage = event["stage"]
            elif kind == "done":
                run.summaryPath = Path(event.get("summary", run.folder / "output" / "summary.json"))
                try:
                    run.result = read_result(run.summaryPath, run.inputSize)
                except ChildError as error:
                    status.state, status.message = "failed", str(error)
                    return status
                status.state, status.fraction = "done", 1.0
                return status
            elif kind == "error":
                status.state = "failed"
                status.message = str(event.get("message") or "The segmentation worker failed without a message.")
                status.details = str(event.get("details", ""))
                return status
        if worker is not None and not worker.alive and worker.exiting and not run.accepted:
            # It went idle and exited just as the request was sent: a new worker takes it.
            self.worker = None
            try:
                self._ensure_worker().send(run.request)
            except ChildError as error:
                status.state, status.message = "failed", str(error)
            return status
        if worker is None or not worker.alive:
            # Gone without a done/error line: crashed (out of memory, a native library, killed).
            code = None if worker is None else worker.process.returncode
            status.state = "failed"
            status.message = (
                f"The segmentation worker stopped unexpectedly (exit code {code}); nothing was changed. "
                f"Try again, or choose the CPU if this was on the GPU.{worker.stderr_hint() if worker else ''}"
            )
            status.details = worker.stderr_tail() if worker else ""
            self.worker = None
        return status

    @staticmethod
    def _removed_node(run: ActiveRun) -> str:
        """Which of the run's nodes left the scene ("" when none did)."""
        for what, node in (("input volume", run.volumeNode), ("output segmentation", run.segmentationNode), ("region of interest", run.roiNode)):
            if node is not None and node.GetScene() is None:
                return what
        return ""

    def cancel(self) -> None:
        """Stop the running segmentation now: the child is killed (with the model it held) and
        the result, if any arrives, is never read. The scene is not touched."""
        if self.run is None or self.run.status.state != "running":
            return
        if self.worker is not None:
            self.worker.kill()
            self.worker = None
        self.run.status.state = "cancelled"
        self.run.status.message = "Cancelled. Nothing was changed."

    def apply(self):
        """Write the finished run's segments and provenance into the scene (main thread); returns
        the segmentation node. The run is then over."""
        import SimpleITK as sitk

        from . import mrml

        run = self.run
        if run is None or run.result is None or run.status.state != "done":
            raise RuntimeError("apply() needs a finished run; poll() until its state is 'done'.")
        self.run = None
        result = run.result
        node = mrml.outputSegmentationNode(run.volumeNode, run.segmentationNode)
        labels = sitk.GetArrayViewFromImage(result.labels)
        model = result.model
        mrml.writeSegments(node, labels, run.volumeNode, result.specs, model.get("id", ""))
        mrml.writeRunProvenance(
            node, run.volumeNode, model, result.device, result.seconds, roiNode=run.roiNode, indexBox=run.indexBox,
            notes=result.notes, warnings=result.warnings, details=result.details, sideVolumes=result.sideVolumes,
            Process="child",
        )
        spacing = run.volumeNode.GetSpacing()
        mrml.writeVolumeTable(node, result.specs, result.volumes, result.sideVolumes, result.details, spacing[0] * spacing[1] * spacing[2])
        self._cleanup_run_folder(run)
        return node

    def finish(self) -> None:
        """Forget a run that will not be applied (failed, cancelled, or discarded) and its files."""
        run, self.run = self.run, None
        if run is not None:
            self._cleanup_run_folder(run)

    def _cleanup_run_folder(self, run: ActiveRun) -> None:
        shutil.rmtree(run.folder, ignore_errors=True)
        if not self.keep_worker and self.worker is not None:
            self.worker.stop()
            self.worker = None

    def shutdown(self) -> None:
        """Module cleanup or scene close: cancel any run, end the worker (its model and GPU memory
        go with it), remove the temporary files."""
        self.cancel()
        self.run = None
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
