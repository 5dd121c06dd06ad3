"""The paper-findings runner: exact channel surgery, strategy choices, parameter matching,
and (slow) an end-to-end smoke run on a tiny synthetic cache, including resume."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))

import paper_findings  # noqa: E402
import pruning  # noqa: E402
import results_page  # noqa: E402
from LUnetSegmentationLib.runtime.model import LUnet, Unet, count_parameters  # noqa: E402


def _randomise_norms(network):
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return network.eval()


@pytest.mark.parametrize("make", [lambda: Unet(levels=3, width=4), lambda: LUnet(levels=4, width=6, convs_per_level=1)])
def test_pruning_silent_channels_keeps_the_output(make):
    """Channels whose BatchNorm (or transposed conv) outputs zero contribute nothing, so
    removing them must leave the logits unchanged: checks every weight slice of the surgery."""
    torch.manual_seed(0)
    network = _randomise_norms(make())
    x = torch.randn(1, 1, 16, 16, 16)
    for level, width in enumerate(network.config.level_channels()):
        keep = pruning.select_channels(network, level, 2, "random", torch.Generator().manual_seed(level))
        silent = copy.deepcopy(network)
        for name, kept in keep.items():
            drop = sorted(set(range(width)) - set(kept.tolist()))
            if name == "up":
                up = silent.ups[pruning._decoder_index(silent, level)]
                up.weight.data[:, drop] = 0
                up.bias.data[drop] = 0
            else:
                block = silent.encoders[level] if name.startswith("enc") else silent.decoders[pruning._decoder_index(silent, level)]
                norm = pruning._pairs(block)[int(name[3:])][1]
                norm.weight.data[drop] = 0
                norm.bias.data[drop] = 0
        pruned = pruning.prune_level(silent, level, keep).eval()
        assert pruned.config.level_channels()[level] == width - 2
        assert count_parameters(pruned) < count_parameters(network)
        with torch.no_grad():
            assert torch.allclose(silent(x), pruned(x), atol=1e-5)


def test_strategies_pick_their_levels():
    network = _randomise_norms(Unet(levels=3, width=4))
    encoder_norm = pruning._pairs(network.encoders[1])[0][1]
    encoder_norm.weight.data[3] = 1e-4  # one clearly useless channel at level 1
    generator = torch.Generator().manual_seed(0)
    pruned, level = pruning.prune_step(network, "bn", 0.25, generator)
    assert level == 1 and pruned.config.level_channels() == [4, 6, 16]
    kept = pruning.select_channels(network, 1, 2, "bn", generator)["enc0"].tolist()
    assert 3 not in kept
    assert pruning.prune_step(network, "random_widest", 0.25, generator)[1] == 2  # widest = deepest
    assert pruning.prune_step(network, "random_same", 0.25, generator, level=0)[1] == 0
    with pytest.raises(ValueError, match="unknown pruning strategy"):
        pruning.prune_step(network, "magic", 0.25, generator)


def test_narrow_unet_matches_the_lunet_parameter_count():
    args = paper_findings.parse_args(["--data", "x.npz", "--levels", "5", "--unet-width", "4"])
    models = paper_findings.planned_models(args)
    for width in args.match_widths:
        narrow = paper_findings.parameters_of(models[f"narrow_unet_match_lunet_w{width}"])
        lunet = paper_findings.parameters_of(models[f"lunet_w{width}"])
        assert abs(narrow - lunet) / lunet < 0.15, (width, narrow, lunet)
        channels = models[f"narrow_unet_match_lunet_w{width}"].channels
        assert channels == sorted(channels) and channels[-1] > channels[0]  # still widening with depth
    assert paper_findings.parameters_of(models["unet_w4"]) == 353_959  # the paper's 354k layout


def _synthetic_cache(path: Path, cases: int = 10, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    grid = np.indices((size,) * 3).astype(np.float32) - size / 2
    for index in range(cases):
        radius = rng.uniform(3, 6)
        ball = (grid**2).sum(0) < radius**2
        label = np.where(ball, np.where(grid[0] < 0, 1, 2), 0).astype(np.uint8)
        image = (label > 0) * 2.0 + rng.normal(0, 0.5, label.shape)
        arrays[f"image/case_{index:03d}"] = image.astype(np.float16)
        arrays[f"label/case_{index:03d}"] = label
    arrays["preprocessing"] = np.frombuffer(json.dumps({"spacing": [1, 1, 1]}).encode(), dtype=np.uint8)
    np.savez_compressed(path, **arrays)
    return path


@pytest.mark.slow
def test_findings_runner_end_to_end_and_resumes(tmp_path, capsys):
    cache = _synthetic_cache(tmp_path / "cache.npz")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"patch_size": [16, 16, 16], "batch_size": 2, "learning_rate": 0.01}))
    argv = ["--data", str(cache), "--work", str(tmp_path / "work"), "--results", str(tmp_path / "findings.json"),
            "--page", str(tmp_path / "RESULTS.md"), "--plot", str(tmp_path / "plot.png"), "--config", str(config),
            "--epochs", "1", "--finetune-epochs", "1", "--prune-steps", "1", "--seeds", "0", "--levels", "3",
            "--unet-width", "2", "--lunet-widths", "2", "--match-widths", "2", "--device", "cpu", "--smoke"]
    assert paper_findings.main(argv) == 0
    result = json.loads((tmp_path / "findings.json").read_text())
    assert result["meta"]["smoke"] is True and result["meta"]["complete"] is True
    assert set(result["finding1"]) == {"unet_w2", "lunet_w2"}
    assert set(result["finding2"]) == set(pruning.STRATEGIES)
    for curve in result["finding2"].values():
        assert curve[1]["parameters"] < curve[0]["parameters"]  # step 1 removed channels
        assert set(curve[1]["per_label"]) == {"1", "2"}
    bn, same = result["finding2"]["bn"][1], result["finding2"]["random_same"][1]
    assert bn["channels"] == same["channels"]  # random channels at the level BN scale picked
    assert "Not run yet" in (tmp_path / "RESULTS.md").read_text()  # a smoke run is never shown as findings
    capsys.readouterr()
    assert paper_findings.main(argv) == 0  # resumed: every training is found finished
    assert "training" not in capsys.readouterr().out


def test_results_page_shows_real_findings_and_draws_the_plot(tmp_path):
    pytest.importorskip("PySide6")
    point = {"parameters": 1000, "channels": [2, 2], "mean_dice": {"mean": 0.8, "std": 0.01, "n": 3},
             "per_label": {"1": {"mean": 0.8, "std": 0.0, "n": 3}, "2": {"mean": 0.8, "std": 0.0, "n": 3}}, "seeds": 3}
    result = {"meta": {"smoke": False, "command": "python experiments/paper_findings.py ...", "device": "cpu", "epochs": 1,
                       "finetune_epochs": 1, "seeds": [0, 1, 2], "levels": 5, "dice": "validation"},
              "finding1": {"unet_w4": {**point, "parameters": 350000}, "lunet_w4": point},
              "finding2": {"bn": [{"step": 0, **point}, {"step": 1, **point, "parameters_mean": 500.0, "levels": [1]}]},
              "finding3": {"narrow_unet_match_lunet_w4": {"narrow_unet": point, "lunet": point}}}
    print(results_page.write_plot(result, tmp_path / "plot.png"))
    assert (tmp_path / "plot.png").stat().st_size > 1000
    results_page.write_page(tmp_path / "RESULTS.md", result, tmp_path / "plot.png")
    page = (tmp_path / "RESULTS.md").read_text()
    assert "Not run yet" not in page and "350x fewer parameters" in page and "lunet_w4" in page
    assert "Reduced budget" in page  # 1 epoch: the page must say the networks are undertrained


def test_convergence_flags_reach_the_full_trainings_only():
    args = paper_findings.parse_args(["--data", "x.npz", "--epochs", "600", "--patience", "50", "--min-epochs", "200"])
    config = paper_findings.base_config(args, seed=1)
    assert (config.epochs, config.patience_epochs, config.min_epochs, config.validate_every) == (600, 50, 200, 5)
    fixed = paper_findings.base_config(paper_findings.parse_args(["--data", "x.npz", "--epochs", "30"]), seed=1)
    assert (fixed.patience_epochs, fixed.validate_every) == (0, 30)  # a fixed budget validates once, at the end


def test_results_page_states_the_convergence_rule_and_when_the_trainings_stopped():
    point = {"parameters": 1000, "channels": [2, 2], "mean_dice": {"mean": 0.8, "std": 0.01, "n": 3},
             "per_label": {"1": {"mean": 0.8, "std": 0.0, "n": 3}, "2": {"mean": 0.8, "std": 0.0, "n": 3}}, "seeds": 3}
    result = {"meta": {"smoke": False, "command": "python experiments/paper_findings.py ...", "device": "cuda", "epochs": 600,
                       "patience": 50, "min_epochs": 200, "finetune_epochs": 40, "seeds": [0, 1, 2], "levels": 5,
                       "dice": "validation"},
              "finding1": {"unet_w4": {**point, "parameters": 350000, "epochs_trained": [260, 310, 245]},
                           "lunet_w4": {**point, "epochs_trained": [200, 415, 230]}}}
    page = "\n".join(results_page.findings_section(result, plot=None))
    assert "Reduced budget" not in page
    assert "at least 200 epochs" in page and "not improved for 50" in page and "after 200-415 epochs" in page


def test_the_gpu_script_runs_the_convergence_command_of_the_results_page():
    script = (REPO / "scripts" / "gpu_measurements.sh").read_text()
    default = script.split('FINDINGS_ARGS=${FINDINGS_ARGS:-"', 1)[1].split('"', 1)[0]
    assert default and default in results_page.GPU_FINDINGS_COMMAND
    assert "--work runs/pf_converged" in results_page.GPU_FINDINGS_COMMAND and "--work runs/pf_converged" in script
    for name in ("gpu_measurements.sh", "stage_gpu_inputs.sh"):
        subprocess.run(["bash", "-n", str(REPO / "scripts" / name)], check=True)  # parses


def test_throughput_section_shows_the_measured_files_and_says_what_the_gpu_lacks(tmp_path, monkeypatch):
    import throughput_section

    cluster = {"command": "python benchmarks/cohort.py --scans 8", "scans": 8, "device": "cpu",
               "model": {"id": "hippocampus-whole-lunet", "version": "1.1.0"}, "machine": {"cpus": 2, "load_average_at_start": [1.0]},
               "runs": [{"workers": 1, "scans": 8, "ok": 8, "scans_per_minute": 35.3, "steady_scans_per_minute": 49.0,
                         "cpu_seconds_per_scan": {"median": 1.83}, "peak_mb_per_worker": 752.1, "group_seconds": 0.4}]}
    applied = {"command": "python benchmarks/module_apply.py", "device": "cpu", "parent": "scene",
               "scans": [{"scan": "norm.nii.gz", "cold": {"wall_s": 1.3, "worker_cpu_s": 1.8},
                          "warm_median": {"wall_s": 1.1, "worker_cpu_s": 1.5, "parent_cpu_s": 0.15}}]}
    (tmp_path / "cohort_cpu.json").write_text(json.dumps(cluster))
    (tmp_path / "module_apply_cpu.json").write_text(json.dumps(applied))
    monkeypatch.setattr(throughput_section, "RESULTS", tmp_path)
    page = "\n".join(throughput_section.throughput_section())
    assert "| 1 | 8 of 8 | 35.3 | 49.0 | 1.83 | 752.1 | 0.4 |" in page
    assert "| cpu | scene | norm.nii.gz | 1.3 | 1.8 | 1.1 | 1.5 | 0.15 |" in page and "`python benchmarks/module_apply.py`" in page
    assert "GPU: not measured yet" in page and "gpu_measurements.sh throughput" in page
