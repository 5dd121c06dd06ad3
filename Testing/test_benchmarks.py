"""The speed benchmark's fast mode (what CI runs): it finishes, writes the documented JSON,
and its ratios are the figures divided by the standard Unet's. No timing is asserted."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "speed.py"


def _load_speed():
    spec = importlib.util.spec_from_file_location("speed_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fast_result(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("speed") / "speed.json"
    # A bare environment, as on a GPU server: only PYTHONPATH-free `python speed.py`.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--fast", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| lunet |" in done.stdout  # the printed table
    return json.loads(out.read_text())


def test_fast_run_reports_every_model_and_figure(fast_result):
    speed = _load_speed()
    assert set(fast_result["models"]) == {"lunet", "unet", "nnunet"}
    assert fast_result["meta"]["baseline"] == "unet" and fast_result["meta"]["fast"] is True
    for name, row in fast_result["models"].items():
        for key in speed.RATIO_KEYS:
            assert isinstance(row[key], (int, float)) and row[key] >= 0, (name, key, row.get(key))
        assert row["parameters"] > 0 and row["macs_crop"] > 0 and row["crop_latency_s"] > 0
        assert row["max_train_batch"] == int(row["max_train_batch"])
        assert row["macs_whole"] >= row["macs_whole_untiled"]  # overlapping tiles recompute voxels
    card = json.loads((REPO / "LUnetSegmentation/Resources/Models/hippocampus_lunet.json").read_text())
    assert fast_result["models"]["lunet"]["parameters"] == card["parameters"]
    assert fast_result["models"]["nnunet"]["network"]["levels"] == 4
    assert fast_result["models"]["unet"]["network"]["architecture"] == "Unet"
    names = [item["name"] for item in fast_result["exploration"]]
    assert "whole-brain tile size" in names and "channels_last_3d" in names


def test_ratios_are_figures_over_the_standard_unet(fast_result):
    models, ratios = fast_result["models"], fast_result["ratios"]
    for name, row in models.items():
        for key, ratio in ratios[name].items():
            base = models["unet"][key]
            if not base:
                assert ratio is None
                continue
            assert math.isclose(ratio, row[key] / base, rel_tol=1e-9), (name, key)
            if name == "unet":
                assert ratio == 1.0
    # sizes do not depend on the machine: the LUnet is the smaller network
    assert ratios["lunet"]["parameters"] < 0.2 and ratios["nnunet"]["parameters"] > 1


def test_mac_count_agrees_with_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    from LUnetSegmentationLib.runtime.model import NetworkConfig, build_network

    speed = _load_speed()
    for config in (NetworkConfig(architecture="LUnet", levels=3, width=4), NetworkConfig(architecture="Unet", levels=3, width=2)):
        shape = [8, 16, 8]
        network = build_network(config).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            network(torch.zeros(1, 1, *shape))
        conv_flops = sum(v for k, v in counter.get_flop_counts()["Global"].items() if "convolution" in str(k))
        assert speed.count_macs(config, shape) * 2 == conv_flops
