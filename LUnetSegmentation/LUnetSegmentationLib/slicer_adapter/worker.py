"""The child process the Slicer module runs inference in: no MRML, no Qt, no slicer import.

Why a child process: inside Slicer the main thread holds Python's GIL whenever it is in C++
(CTK/PythonQt never release it), so a Python worker thread gets the GIL only in the gaps and the
GUI and the work starve each other. A separate process has its own interpreter and GIL.

Run it with Slicer's own Python (`PythonSlicer`), or any Python with the requirements:

    PythonSlicer -m LUnetSegmentationLib.slicer_adapter.worker                   # requests on stdin (persistent)
    PythonSlicer -m LUnetSegmentationLib.slicer_adapter.worker --request req.json  # one request, then exit

(`LUnetSegmentationLib` must be importable: on PYTHONPATH. The Slicer panel does not rely on
that: it runs `PythonSlicer -c BOOTSTRAP <folder holding LUnetSegmentationLib>` (see
`childprocess.worker_command`), which puts the folder on sys.path itself and calls `main`.)

Protocol, version 1. Every message is one JSON object on one line, UTF-8.

Requests (stdin, one per line; stdin closed or {"command": "exit"} ends the worker):
    {"id": "run-1",                   # echoed in every event about this request
     "input": "/tmp/x/input.nrrd",    # any file SimpleITK reads (.nrrd, .nii.gz, .mha)
     "output_dir": "/tmp/x/run-1",    # created if missing; the results go here
     "model": null,                   # model id, card .json or training folder (null: default)
     "device": "auto",                # "auto" | "cuda" | "cpu"
     "index_box": [[i0, j0, k0], [i1, j1, k1]],  # optional: voxel box [start, stop) (a user's ROI)
     "name": "MRHead",                # optional: the volume's name, for messages
     "checked": []}                   # optional: warnings of the entry check the parent already
                                      # ran on these voxels (absent: the worker runs it)

Events (stdout; anything else goes to stderr, so stdout stays parseable: the protocol is written
to a private duplicate of the original stdout descriptor and descriptor 1 itself is pointed at
stderr, so even native code that writes to stdout, with or without a newline, cannot break a
line; the parent also finds an event glued after foreign text):
    {"event": "ready", "protocol": 1, "pid": 123, "python": "3.9.10", "version": "1.0.0"}
    {"event": "started", "id": "run-1"}
    {"event": "progress", "id": "run-1", "fraction": 0.42, "stage": "network"}
        stages in order: "reading", "network" (model load, localization, inference),
        "writing"; fraction is of the whole request, 0..1, never decreasing
    {"event": "done", "id": "run-1", "labels": "/tmp/x/run-1/labels.nrrd",
     "summary": "/tmp/x/run-1/summary.json", "seconds": 1.9}
    {"event": "error", "id": "run-1", "message": "what is wrong and what to do",
     "type": "InputError", "details": "traceback"}
    {"event": "exiting", "reason": "idle", "idle_seconds": 300}
        a worker that used CUDA exits after IDLE_EXIT_S seconds without a request, so its CUDA
        context (hundreds of MB that empty_cache cannot hand back) does not stay on the GPU; the
        parent starts a new one on the next request. A CPU-only worker stays.

The input is read like every other entry point reads a file (files.volumeio.readImage: header,
size, completeness, NaN and detached-data checks; a FIFO or device is refused) and the outputs
are written like the CLI writes them (files.outputs: the folder checked, each file written to a
temporary name and renamed without following or replacing anything, so a planted link or file
under labels.nrrd is refused rather than written through).

Outputs in output_dir:
    labels.nrrd   uint8 labels on the input's own grid (same size, spacing, origin, direction)
    summary.json  {"protocol": 1, "labels_file": "labels.nrrd",
                   "labels": [{"value", "structure", "segment_name", "color", "side",
                               "terminology"}, ...],
                   "volumes_mm3": {segment name: mm3}, "side_volumes_mm3": {"left": mm3, ...},
                   "model": {"id", "version", "weights_sha256"}, "device", "seconds",
                   "notes": [...], "details": {...}, "memory": {what was released}}

The model stays loaded between requests (the pipeline's model cache), so a second click skips
torch start-up and model loading. GPU memory is handed back to the driver after every request
(`torch.cuda.empty_cache`); the CUDA context goes when the idle worker exits.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import stat
import sys
import threading
import time
import traceback
from pathlib import Path

PROTOCOL = 1
LABELS_FILE = "labels.nrrd"
SUMMARY_FILE = "summary.json"
# Share of a request's progress bar per stage: reading the input, the network (model load,
# localization, inference; reported by the pipeline), writing the result.
READ_SHARE, WRITE_SHARE = 0.05, 0.05
PROGRESS_INTERVAL_S = 0.1  # at most ten progress lines a second
# A worker holding a CUDA context exits after this long without a request (LUNET_WORKER_IDLE_EXIT_S).
IDLE_EXIT_S = 300.0


class Emitter:
    """Writes protocol lines to the real stdout, whatever the libraries do with sys.stdout."""

    def __init__(self, stream):
        self.stream = stream
        self._last = {}

    def __call__(self, event: str, **fields) -> None:
        self.stream.write(json.dumps({"event": event, **fields}) + "\n")
        self.stream.flush()

    def progress(self, request_id: str, fraction: float, stage: str, force: bool = False) -> None:
        now = time.monotonic()
        last_time, last_fraction = self._last.get(request_id, (0.0, -1.0))
        fraction = max(float(fraction), last_fraction)  # never goes back
        if not force and now - last_time < PROGRESS_INTERVAL_S:
            return
        self._last[request_id] = (now, fraction)
        self("progress", id=request_id, fraction=round(min(max(fraction, 0.0), 1.0), 4), stage=stage)


def release_torch_memory() -> dict:
    """Hand cached GPU memory back to the driver. Only touches torch when it is already imported
    (never imports it) and CUDA was initialised; returns what was done, for the summary."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {"cuda_cache_emptied": False}
    before = torch.cuda.memory_reserved()
    torch.cuda.empty_cache()
    return {"cuda_cache_emptied": True, "reserved_before_bytes": int(before), "reserved_after_bytes": int(torch.cuda.memory_reserved())}


def cuda_initialised() -> bool:
    """True when this process holds a CUDA context (never imports torch)."""
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized())
    except Exception:
        return False


def idle_exit_seconds() -> float:
    try:
        return float(os.environ.get("LUNET_WORKER_IDLE_EXIT_S", IDLE_EXIT_S))
    except ValueError:
        return IDLE_EXIT_S


def _read_input(path: str):
    """The request's input through the file layer's checked reader (as the CLI reads files)."""
    from ..files.volumeio import readImage
    from ..runtime.preprocess import InputError

    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        # readImage would call it "no such file"; say what it is.
        raise InputError(f"The worker's input {path} is not a regular file (a pipe, device or folder); it was not "
                         "read. Give it an image file (.nrrd, .nii.gz, .mha).")
    return readImage(path)


def _index_box(value):
    if value is None:
        return None
    try:
        start, stop = ([int(v) for v in corner] for corner in value)
    except (TypeError, ValueError):
        raise ValueError(f"index_box must be [[i0, j0, k0], [i1, j1, k1]], got {value!r}") from None
    if len(start) != 3 or len(stop) != 3:
        raise ValueError(f"index_box must hold two 3-element corners, got {value!r}")
    return start, stop


def run_request(request: dict, emit: Emitter) -> dict:
    """Segment one request's input; writes labels.nrrd and summary.json; returns the done event's fields."""
    import SimpleITK as sitk

    from .. import __version__
    from ..files.outputs import check_output_dir, write_atomic
    from ..runtime.pipeline import label_image

    request_id = str(request.get("id", ""))
    started = time.time()
    for key in ("input", "output_dir"):
        if not request.get(key):
            raise ValueError(f"The request has no {key!r}; give the input file and the output folder.")
    output_dir = check_output_dir(request["output_dir"])  # refuses a link, a file, an unwritable folder
    emit.progress(request_id, 0.0, "reading", force=True)
    image = _read_input(str(request["input"]))
    share = 1.0 - READ_SHARE - WRITE_SHARE

    def progress(fraction: float) -> None:
        emit.progress(request_id, READ_SHARE + share * float(fraction), "network")

    result = label_image(
        image,
        model=request.get("model"),
        device=request.get("device") or "auto",
        index_box=_index_box(request.get("index_box")),
        progress=progress,
        name=str(request.get("name") or "volume"),
        checked=request.get("checked"),
    )
    emit.progress(request_id, READ_SHARE + share, "writing", force=True)
    labels_path = write_atomic(output_dir / LABELS_FILE, lambda tmp: sitk.WriteImage(result.labels, str(tmp), True))
    summary = result.summary()
    summary.update(protocol=PROTOCOL, labels_file=LABELS_FILE, module_version=__version__, input=str(request["input"]))
    summary["memory"] = release_torch_memory()
    # Written last: a summary that exists is complete.
    summary_path = write_atomic(output_dir / SUMMARY_FILE, lambda tmp: tmp.write_text(json.dumps(summary, indent=1), encoding="utf-8"))
    emit.progress(request_id, 1.0, "writing", force=True)
    return {"labels": str(labels_path), "summary": str(summary_path), "seconds": round(time.time() - started, 3)}


def handle(request: dict, emit: Emitter) -> bool:
    """One request, every outcome reported as an event; True when it succeeded."""
    request_id = str(request.get("id", ""))
    emit("started", id=request_id)
    try:
        emit("done", id=request_id, **run_request(request, emit))
        return True
    except Exception as error:  # reported to the parent, which shows it; the worker goes on
        release_torch_memory()
        emit("error", id=request_id, message=str(error) or type(error).__name__, type=type(error).__name__,
             details=traceback.format_exc())
        return False


_END = object()


def _lines_in_background(lines) -> queue.Queue:
    """Request lines handed over by a reader thread, so the main loop can wait with a timeout
    (the worker is a process of its own: a thread here does not compete with Slicer's GIL)."""
    pending = queue.Queue()

    def read():
        try:
            for line in lines:
                pending.put(line)
        finally:
            pending.put(_END)

    threading.Thread(target=read, name="requests", daemon=True).start()
    return pending


def serve(lines, emit: Emitter, idle_exit_s: float | None = None, gpu_in_use=cuda_initialised) -> int:
    """Handle request lines until they end or an exit command; 1 if any request failed. While
    `gpu_in_use()`, the worker exits after `idle_exit_s` seconds without a request."""
    from .. import __version__

    idle_exit_s = idle_exit_seconds() if idle_exit_s is None else idle_exit_s
    failed = False
    emit("ready", protocol=PROTOCOL, pid=os.getpid(), python=sys.version.split()[0], version=__version__)
    pending = _lines_in_background(lines)
    while True:
        try:
            line = pending.get(timeout=idle_exit_s if gpu_in_use() else None)
        except queue.Empty:
            emit("exiting", reason="idle", idle_seconds=idle_exit_s)
            break
        if line is _END:
            break
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request must be a JSON object")
        except ValueError as error:
            emit("error", id="", message=f"Unreadable request line ({error}): {line[:200]}", type="ProtocolError", details="")
            failed = True
            continue
        if request.get("command") == "exit":
            break
        failed = not handle(request, emit) or failed
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m LUnetSegmentationLib.slicer_adapter.worker", description="LUnet segmentation worker (JSON lines protocol; see the module docstring)")
    parser.add_argument("--request", help="a request JSON file: run it and exit (default: requests on stdin, one per line)")
    args = parser.parse_args(argv)
    stream, restore = protocol_stream()
    emit = Emitter(stream)
    try:
        if args.request:
            request = json.loads(Path(args.request).read_text())
            return serve([json.dumps(request)], emit)
        return serve(sys.stdin, emit)
    finally:
        restore()


def protocol_stream():
    """A private stream for protocol lines, and a function that undoes the redirection.

    The original stdout descriptor is duplicated for the protocol; descriptor 1 (and on Windows
    the process's standard output handle, which native code may use directly) then points at
    stderr, as does sys.stdout. So nothing but protocol lines reaches the parent's event file,
    whatever Python or native code prints."""
    sys.stdout.flush()
    original = sys.stdout
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    if sys.platform == "win32":
        import ctypes
        import msvcrt

        ctypes.windll.kernel32.SetStdHandle(-11, msvcrt.get_osfhandle(2))  # STD_OUTPUT_HANDLE
    stream = os.fdopen(protocol_fd, "w", encoding="utf-8", buffering=1, closefd=False)
    sys.stdout = sys.stderr

    def restore():
        stream.flush()
        sys.stdout.flush()
        os.dup2(protocol_fd, 1)
        if sys.platform == "win32":
            import ctypes
            import msvcrt

            ctypes.windll.kernel32.SetStdHandle(-11, msvcrt.get_osfhandle(1))
        os.close(protocol_fd)
        sys.stdout = original

    return stream, restore


if __name__ == "__main__":
    sys.exit(main())
