"""The panel's worker process on its own (issue 23 items 3, 5, 13; issue 24's worker cases): a
real child started with the panel's own command line, fed requests on stdin as the panel does.
Torch-free: a request that gets past the input and output checks is never needed here."""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LUnetSegmentationLib.slicer_adapter import childprocess, worker
from LUnetSegmentationLib.slicer_adapter.childprocess import LIB_PARENT, parse_event_line, worker_command


def run_child(requests: list[dict], prelude: str = "", timeout: float = 60) -> tuple[list[dict], str, str]:
    """Start the worker with the panel's command line (a prelude may patch it first), send the
    requests, close stdin; returns (events, raw stdout, stderr)."""
    command = worker_command(sys.executable)
    if prelude:
        # The same bootstrap, with the prelude run between the import and main().
        command[2] = (
            "import sys; sys.path.insert(0, sys.argv[1]); from LUnetSegmentationLib.slicer_adapter import worker; "
            + f"exec({prelude!r}); sys.exit(worker.main(sys.argv[2:]))"
        )
    stdin = "".join(json.dumps(request) + "\n" for request in requests)
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout)
    events = [event for event in map(parse_event_line, done.stdout.splitlines()) if event is not None]
    return events, done.stdout, done.stderr


def test_native_stdout_without_a_newline_cannot_swallow_the_done_event(tmp_path):
    # Item 5: native code (a C library) writes to file descriptor 1 without a newline; the done
    # event must still arrive as a line of its own.
    prelude = textwrap.dedent("""
        import os
        worker.run_request = lambda request, emit: (os.write(1, b"native progress 100%"), {"labels": "l", "summary": "s", "seconds": 0.1})[1]
    """).strip()
    events, stdout, stderr = run_child([{"id": "run-1", "input": "x", "output_dir": str(tmp_path)}], prelude)
    assert [e["event"] for e in events] == ["ready", "started", "done"], stdout
    assert all(line.startswith('{"event"') for line in stdout.splitlines()), "only protocol lines on the protocol stream"
    assert "native progress 100%" in stderr, "native output goes to stderr"


def test_an_event_glued_after_foreign_text_is_still_found():
    event = parse_event_line('native text{"event": "done", "id": "run-1", "summary": "s"}')
    assert event == {"event": "done", "id": "run-1", "summary": "s"}


def nan_nifti(path: Path) -> Path:
    voxels = np.full((30, 30, 30), 100.0, dtype=np.float32)
    voxels[5:10, 5:10, 5:10] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(voxels), str(path))
    return path


def only_error(events: list[dict]) -> dict:
    kinds = [e["event"] for e in events if e["event"] != "progress"]
    assert kinds == ["ready", "started", "error"], events
    return events[-1]


def test_a_nan_nifti_is_refused_as_the_cli_refuses_it(tmp_path):
    # Issue 24: ITK reads NaN as 0, so the worker measured a smaller hippocampus; the file
    # layer's checked reader refuses the file.
    request = {"id": "r", "input": str(nan_nifti(tmp_path / "nan.nii.gz")), "output_dir": str(tmp_path / "out")}
    error = only_error(run_child([request])[0])
    assert "NaN" in error["message"] or "not a number" in error["message"], error["message"]
    assert not (tmp_path / "out" / "labels.nrrd").exists()


def test_a_detached_header_naming_a_device_is_not_read(tmp_path):
    header = tmp_path / "evil.nhdr"
    header.write_text("NRRD0004\ntype: float\ndimension: 3\nsizes: 64 64 64\nencoding: raw\nendian: little\n"
                      "data file: /dev/urandom\n\n")
    request = {"id": "r", "input": str(header), "output_dir": str(tmp_path / "out")}
    started = time.time()
    error = only_error(run_child([request], timeout=30)[0])
    assert "not a regular file" in error["message"], error["message"]
    assert time.time() - started < 30


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_input_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "input.nrrd"
    os.mkfifo(fifo)
    request = {"id": "r", "input": str(fifo), "output_dir": str(tmp_path / "out")}
    error = only_error(run_child([request], timeout=30)[0])
    assert "not a regular file" in error["message"], error["message"]


def test_a_link_planted_under_labels_nrrd_is_not_written_through(tmp_path):
    # The pipeline is replaced by a stand-in result: this is about the writing.
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    output = tmp_path / "out"
    output.mkdir()
    (output / "labels.nrrd").symlink_to(victim)
    image = tmp_path / "input.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32)), str(image))
    prelude = textwrap.dedent("""
        import SimpleITK as sitk
        from LUnetSegmentationLib.runtime import pipeline
        class Result:
            labels = sitk.Image(20, 20, 20, sitk.sitkUInt8)
            def summary(self): return {}
        pipeline.label_image = lambda image, **kwargs: Result()
    """).strip()
    error = only_error(run_child([{"id": "r", "input": str(image), "output_dir": str(output)}], prelude)[0])
    assert "already exists" in error["message"], error["message"]
    assert victim.read_text() == "precious", "the link's target is untouched"
    assert os.path.islink(output / "labels.nrrd")


def test_an_output_folder_that_is_a_link_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").symlink_to(elsewhere)
    image = tmp_path / "input.nrrd"
    sitk.WriteImage(sitk.Image(20, 20, 20, sitk.sitkFloat32), str(image))
    error = only_error(run_child([{"id": "r", "input": str(image), "output_dir": str(tmp_path / "out")}])[0])
    assert "symbolic link" in error["message"], error["message"]
    assert list(elsewhere.iterdir()) == []


def serve_in_thread(lines, gpu_in_use, idle_exit_s):
    """worker.serve on a line source the test controls; returns (thread, events, feed)."""
    feed: queue.Queue = queue.Queue()

    def source():
        while True:
            line = feed.get()
            if line is None:
                return
            yield line

    class Collect:
        def __init__(self):
            self.events = []

        def __call__(self, event, **fields):
            self.events.append({"event": event, **fields})

    emit = Collect()
    thread = threading.Thread(target=worker.serve, args=(source(), emit), kwargs={"idle_exit_s": idle_exit_s, "gpu_in_use": gpu_in_use}, daemon=True)
    thread.start()
    return thread, emit.events, feed


def test_an_idle_worker_holding_a_cuda_context_exits():
    # Item 13: empty_cache cannot return the CUDA context; the idle worker itself must go.
    thread, events, feed = serve_in_thread([], gpu_in_use=lambda: True, idle_exit_s=0.2)
    thread.join(timeout=5)
    assert not thread.is_alive(), "the worker left its loop"
    assert events[-1] == {"event": "exiting", "reason": "idle", "idle_seconds": 0.2}
    feed.put(None)


def test_an_idle_cpu_worker_stays():
    thread, events, feed = serve_in_thread([], gpu_in_use=lambda: False, idle_exit_s=0.1)
    thread.join(timeout=0.5)
    assert thread.is_alive(), "a CPU worker keeps its model loaded for the next click"
    feed.put(None)
    thread.join(timeout=5)
    assert not thread.is_alive() and [e["event"] for e in events] == ["ready"]


def test_the_next_request_after_an_idle_exit_goes_to_a_new_worker(tmp_path):
    runner = childprocess.Runner(python=sys.executable)
    try:
        first = runner._ensure_worker()
        first.process.stdin.close()  # stands in for the idle exit
        first.process.wait(timeout=30)
        with open(first.events_path, "a") as events:
            events.write('{"event": "exiting", "reason": "idle", "idle_seconds": 300}\n')
        assert runner._ensure_worker() is not first
    finally:
        runner.shutdown()


# --- Windows (item 2 and 3): what can be checked here is the command line and Popen's arguments.
# That the 8.3 name opens in ITK on a non-UTF-8 code page, and that no window flashes, only a
# real Windows can show.


def test_on_windows_the_worker_starts_without_a_console_window(monkeypatch, tmp_path):
    seen = {}

    class FakePopen:
        def __init__(self, command, **kwargs):
            seen.update(kwargs, command=command)
            self.pid, self.stdin = 4242, None

        def poll(self):
            return None

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(childprocess.subprocess, "Popen", FakePopen)
    childprocess.Worker("PythonSlicer.exe", tmp_path)
    flags = seen["creationflags"]
    assert flags & childprocess.CREATE_NO_WINDOW and flags & childprocess.CREATE_NEW_PROCESS_GROUP
    assert "start_new_session" not in seen
    assert seen["env"]["PYTHONUTF8"] == "1"


def test_on_windows_taskkill_runs_without_a_console_window(monkeypatch):
    calls = []
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(childprocess.subprocess, "run", lambda command, **kwargs: calls.append((command, kwargs)))

    class Process:
        pid = 4242

        def poll(self):
            return None

        def wait(self, timeout=None):
            return 0

    childprocess.kill_tree(Process())
    command, kwargs = calls[0]
    assert command[:4] == ["taskkill", "/F", "/T", "/PID"]
    assert kwargs["creationflags"] & childprocess.CREATE_NO_WINDOW


def test_on_windows_non_ascii_paths_reach_the_child_as_short_names(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    short = {"C:\\Users\\Jürgen\\AppData\\Local\\slicer.org\\Ext\\LUnetSegmentation": "C:\\Users\\JRGEN~1\\AppData\\Local\\SLICER~1.ORG\\Ext\\LUNETS~1"}
    monkeypatch.setattr(childprocess, "_windows_short_path", lambda path: short.get(path, path))
    command = worker_command("C:\\Slicer\\bin\\PythonSlicer.exe", "C:\\Users\\Jürgen\\AppData\\Local\\slicer.org\\Ext\\LUnetSegmentation")
    assert command[3] == "C:\\Users\\JRGEN~1\\AppData\\Local\\SLICER~1.ORG\\Ext\\LUNETS~1"
    assert command[3].isascii()
    assert childprocess.child_path("C:\\Temp\\plain") == "C:\\Temp\\plain"


def test_elsewhere_paths_are_passed_unchanged(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert childprocess.child_path("/home/jürgen/x") == "/home/jürgen/x"
    assert worker_command("python", LIB_PARENT)[3] == str(LIB_PARENT)


# --- item 10: the input deleted mid-run


def test_removing_the_input_mid_run_stops_the_child_and_its_files(mrml_scene, tmp_path):
    from LUnetSegmentationLib.slicer_adapter import mrml

    # A child that takes the request and never answers: the run is still going when the node goes.
    silent = tmp_path / "python"
    silent.write_text("#!/bin/sh\nexec sleep 120\n")
    silent.chmod(0o755)
    voxels = np.random.default_rng(0).normal(500, 100, (48, 48, 48)).astype(np.float32)
    volume = mrml.imageToVolumeNode(mrml_scene.scene, sitk.GetImageFromArray(voxels), "head")
    runner = childprocess.Runner(python=str(silent))
    try:
        run = runner.start(volume, device="cpu")
        process = runner.worker.process
        assert runner.poll().state == "running"
        mrml_scene.scene.RemoveNode(volume)
        status = runner.poll()
        assert status.state == "failed" and "input volume was removed" in status.message, status.message
        assert process.poll() is not None, "the child is stopped at once, not left to compute to the end"
        runner.finish()
        assert not run.folder.exists(), "the run's temporary files go with it"
    finally:
        runner.shutdown()


def test_on_windows_a_path_without_a_short_name_is_refused_clearly(monkeypatch):
    # 8.3 names can be switched off per drive: then the child could not open the file, and the
    # user would get ITK's "could not open" much later.
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(childprocess, "_windows_short_path", lambda path: path)
    with pytest.raises(childprocess.ChildError, match="no short \\(8.3\\) name.*ASCII only"):
        worker_command("C:\\Slicer\\bin\\PythonSlicer.exe", "D:\\Erweiterungen für Slicer\\LUnetSegmentation")
    with pytest.raises(childprocess.ChildError, match="TEMP and TMP"):
        childprocess.require_child_path("C:\\Users\\Jürgen\\AppData\\Local\\Temp\\LUnetSegmentation-x", "temporary folder")
