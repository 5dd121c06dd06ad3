"""The desktop module's child-process protocol, parts that need no child (torch-free; also run
under Python 3.9 / 3.12 by scripts/check_versions.sh)."""
from __future__ import annotations

import json

from LUnetSegmentationLib.slicer_adapter.childprocess import EventFile, parse_event_line, worker_command
from LUnetSegmentationLib.slicer_adapter.worker import Emitter


def test_progress_lines_are_parsed_and_clamped():
    event = parse_event_line('{"event": "progress", "id": "run-1", "fraction": 0.42, "stage": "network"}\n')
    assert event == {"event": "progress", "id": "run-1", "fraction": 0.42, "stage": "network"}
    assert parse_event_line('{"event": "progress", "fraction": 1.7}')["fraction"] == 1.0
    assert parse_event_line('{"event": "progress", "fraction": -3}')["fraction"] == 0.0


def test_foreign_and_broken_lines_are_ignored():
    for line in ("", "Loading weights...", '{"event": "progress", "fraction": "lots"}', '{"no_event": 1}', "[1, 2]", '{"event": "pro'):
        assert parse_event_line(line) is None, line


def test_event_file_returns_only_complete_new_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    reader = EventFile(path)
    assert reader.read_events() == []  # the child has not written yet
    with open(path, "w") as handle:
        handle.write('{"event": "ready", "pid": 1}\nnoise\n{"event": "progress", "fraction": 0.5, "st')
    assert [e["event"] for e in reader.read_events()] == ["ready"]
    with open(path, "a") as handle:
        handle.write('age": "network"}\n')
    assert reader.read_events() == [{"event": "progress", "fraction": 0.5, "stage": "network"}]
    assert reader.read_events() == []


def test_emitter_writes_one_parseable_line_per_event_and_throttles_progress(tmp_path):
    path = tmp_path / "out.jsonl"
    with open(path, "w") as stream:
        emit = Emitter(stream)
        emit("started", id="a")
        emit.progress("a", 0.1, "network", force=True)
        emit.progress("a", 0.2, "network")  # within 0.1 s of the last: dropped
        emit.progress("a", 0.05, "writing", force=True)  # never goes back
        emit("error", id="a", message="no \"hippocampus\"\nfound", type="InputError", details="")
    events = [parse_event_line(line) for line in path.read_text().splitlines()]
    assert [e["event"] for e in events] == ["started", "progress", "progress", "error"]
    assert [e["fraction"] for e in events if e["event"] == "progress"] == [0.1, 0.1]
    assert events[-1]["message"] == 'no "hippocampus"\nfound'
    json.loads(path.read_text().splitlines()[-1])


def test_worker_command_puts_the_package_on_the_path_itself(tmp_path):
    command = worker_command("/opt/Slicer/bin/PythonSlicer", tmp_path)
    assert command[0] == "/opt/Slicer/bin/PythonSlicer" and command[1] == "-c" and command[3] == str(tmp_path)
    assert "LUnetSegmentationLib.slicer_adapter.worker" in command[2]
