"""Reproduce the three findings of the Lean Unet paper on the Decathlon hippocampus data.

    PYTHONPATH=LUnetSegmentation python experiments/paper_findings.py --data CACHE.npz|DIR \
        --epochs 300 --finetune-epochs 60 [--device cuda]
    # to convergence: each full training stops 50 epochs after its best validation Dice, not
    # before epoch 200, at the latest at --epochs
    ... --epochs 600 --patience 50 --min-epochs 200 --validate-every 5

1. LUnet vs the standard (doubling) Unet at several constant widths, same depth and training.
2. Pruning the trained standard Unet: data-driven (BatchNorm scale, prune + fine-tune,
   repeated) vs random channels at the level it picked vs random channels at the widest
   level; Dice against remaining parameters (see pruning.py for the granularity).
3. A narrow doubling Unet scaled down to a LUnet's parameter count, trained the same way.

Every network is trained by `LUnetSegmentationLib.training.train.train` with one TrainConfig that
differs only in its network, for each seed. The seed also picks the train/validation split
(`cache.split_cases`), so for a given seed every model sees the same split; the spread over
seeds includes the split. The reported Dice is that of the final model on its validation
cases (no best-epoch selection, which would flatter the result), per label, without mirroring;
with --patience the validation Dice decides only when a training stops.

Resumable: every training has its own folder under --work; a finished one (summary.json
with the requested epochs) is skipped and an interrupted one resumes from its checkpoint,
so rerunning the same command continues where it stopped. Needs torch and numpy only when
--data is a cache .npz (python -m LUnetSegmentationLib preprocessing writes one; train()
leaves one at OUT/cache.npz).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "LUnetSegmentation"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from LUnetSegmentationLib.runtime.model import NetworkConfig, build_network, count_parameters  # noqa: E402
from LUnetSegmentationLib.training.train import TrainConfig, load_config, train  # noqa: E402

import pruning  # noqa: E402

PAPER = {  # Hassler et al., HarP hippocampus, binary labels
    "Unet 354k": {"parameters": 354_000, "dice": 85.8},
    "LUnet 42k": {"parameters": 42_000, "dice": 86.4},
    "LUnet 10.7k": {"parameters": 10_700, "dice": 85.3},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="preprocessed cache .npz, or a Decathlon folder/archive (needs SimpleITK)")
    parser.add_argument("--work", default="runs/paper_findings", help="folder for the trainings (resumable)")
    parser.add_argument("--results", default="docs/results/paper_findings.json")
    parser.add_argument("--page", default="docs/RESULTS.md", help="results page to (re)write; '' to skip")
    parser.add_argument("--plot", default="docs/results/dice_vs_params.png", help="'' to skip")
    parser.add_argument("--config", default=None, help="base TrainConfig (file or configs/ name); network is overridden")
    parser.add_argument("--epochs", type=int, default=300, help="budget knob: epochs of every full training")
    parser.add_argument("--patience", type=int, default=0,
                        help="stop a full training once validation Dice has not improved for this many epochs "
                             "(0: off); --epochs is then a cap")
    parser.add_argument("--min-epochs", type=int, default=0, help="with --patience: never stop before this many epochs")
    parser.add_argument("--validate-every", type=int, default=5, help="with --patience: epochs between validations")
    parser.add_argument("--finetune-epochs", type=int, default=0, help="epochs after each pruning step (0: epochs/5)")
    parser.add_argument("--finetune-lr-factor", type=float, default=0.3)
    parser.add_argument("--prune-steps", type=int, default=6)
    parser.add_argument("--prune-fraction", type=float, default=0.5, help="share of a level's channels removed per step")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--levels", type=int, default=5, help="depth of every network (the paper: 5)")
    parser.add_argument("--unet-width", type=int, default=4, help="first-level width of the doubling Unet (paper: 4)")
    parser.add_argument("--lunet-widths", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--match-widths", type=int, nargs="+", default=[4, 8],
                        help="LUnet widths whose parameter count a narrow doubling Unet is matched to (finding 3)")
    parser.add_argument("--batch-size", type=int, default=0, help="0: the base config's")
    parser.add_argument("--max-cases", type=int, default=0, help="first N training cases only (smoke runs)")
    parser.add_argument("--findings", default="1,2,3")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--jobs", type=int, default=1,
                        help="run the seeds in this many parallel processes (small networks leave a GPU mostly idle)")
    parser.add_argument("--smoke", action="store_true", help="mark the results as a smoke run (never shown as findings)")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- models

def network_config(args, architecture: str, width: int = 0, channels: list[int] | None = None) -> NetworkConfig:
    base = NetworkConfig()
    return NetworkConfig(architecture=architecture, levels=args.levels, width=width or args.unet_width,
                         num_classes=base.num_classes, convs_per_level=base.convs_per_level,
                         dropout=base.dropout, channels=list(channels or []))


def parameters_of(config: NetworkConfig) -> int:
    with torch.device("meta"):
        return count_parameters(build_network(config))


def narrow_unet_channels(args, target: int) -> list[int]:
    """Doubling channels round(s * 2**level) (at least 1) whose parameter count is closest to target."""
    best, best_error, seen = None, None, set()
    for scale in np.arange(0.25, args.unet_width + 1e-9, 1 / 64):
        channels = [max(1, int(round(scale * 2**level))) for level in range(args.levels)]
        if tuple(channels) in seen:
            continue
        seen.add(tuple(channels))
        error = abs(parameters_of(network_config(args, "Unet", channels=channels)) - target)
        if best_error is None or error < best_error:
            best, best_error = channels, error
    return best


def planned_models(args) -> dict[str, NetworkConfig]:
    """Finding 1 and 3 models by name."""
    models = {f"unet_w{args.unet_width}": network_config(args, "Unet", args.unet_width)}
    for width in args.lunet_widths:
        models[f"lunet_w{width}"] = network_config(args, "LUnet", width)
    if "3" in args.findings:
        for width in args.match_widths:
            target = parameters_of(network_config(args, "LUnet", width))
            channels = narrow_unet_channels(args, target)
            models[f"narrow_unet_match_lunet_w{width}"] = network_config(args, "Unet", channels=channels)
    return models


# ----------------------------------------------------------------------------- training

def base_config(args, seed: int) -> TrainConfig:
    config = load_config(args.config)
    config.epochs = args.epochs
    # A short budget must not spend most of itself warming up (5 warm-up epochs of 6 would).
    config.warmup_epochs = min(config.warmup_epochs, args.epochs // 10)
    config.seed = seed
    config.validate_every = args.epochs  # validate the final model only: cheaper, no selection
    if args.patience:
        # Convergence: validation decides when to stop, but the model reported is still the
        # last one, not the best, so the reported Dice is not picked on the validation cases.
        config.patience_epochs, config.min_epochs = args.patience, args.min_epochs
        config.validate_every = args.validate_every
    config.max_cases = args.max_cases
    config.time_budget_minutes = 0.0
    if args.batch_size:
        config.batch_size = args.batch_size
    return config


def _finished(folder: Path, epochs: int) -> dict | None:
    summary = folder / "summary.json"
    if not summary.exists():
        return None
    done = json.loads(summary.read_text())
    trained = json.loads((folder / "config.json").read_text())["epochs"]
    return done if trained == epochs and done.get("history") else None


def run_training(args, cache: Path, folder: Path, config: TrainConfig, start=None) -> dict:
    """train() into `folder` unless already finished; `start` (a network) seeds a fine-tune."""
    done = _finished(folder, config.epochs)
    if done is None:
        folder.mkdir(parents=True, exist_ok=True)
        if start is not None and not (folder / "checkpoint.pt").exists():
            # train() resumes from folder/checkpoint.pt: an epoch-0 checkpoint holding the
            # pruned weights makes it fine-tune them with its own loop, schedule and validation.
            optimizer = torch.optim.AdamW(start.parameters(), lr=config.learning_rate)
            generator = torch.Generator(device=next(start.parameters()).device).manual_seed(config.seed)
            torch.save({"network": start.state_dict(), "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state().cpu(), "epoch": 0}, folder / "checkpoint.pt")
        print(f"training {folder.name} ({config.epochs} epochs)", flush=True)
        done = train(cache, config, folder, device=args.device, quiet=True)
    last = done["history"][-1]
    return {"parameters": done["parameters"], "channels": config.network.level_channels(),
            "per_label": {str(k): v for k, v in last["per_label"].items()}, "mean_dice": last["mean_dice"],
            "epochs": done.get("epochs_trained", config.epochs), "stopped_early": done.get("stopped_early", False),
            "seconds": done["seconds"], "validation_cases": done["validation_cases"]}


def load_trained(folder: Path, config: NetworkConfig, device) -> torch.nn.Module:
    network = build_network(config).to(device)
    network.load_state_dict(torch.load(folder / "last.pt", map_location=device, weights_only=True))
    return network


def run_pruning(args, cache: Path, work: Path, seed: int, unet: NetworkConfig, device) -> dict:
    """Prune-and-fine-tune chains of every strategy from this seed's trained Unet."""
    finetune = base_config(args, seed)
    finetune.epochs = args.finetune_epochs or max(1, args.epochs // 5)
    finetune.validate_every = finetune.epochs
    finetune.patience_epochs = finetune.min_epochs = 0  # a fixed budget, equal for every strategy
    finetune.warmup_epochs = 0
    finetune.learning_rate *= args.finetune_lr_factor
    origin = work / f"unet_w{args.unet_width}_s{seed}"
    chains, bn_levels = {}, []
    for strategy in pruning.STRATEGIES:
        network = load_trained(origin, unet, device)
        generator = torch.Generator().manual_seed(1000 * seed + pruning.STRATEGIES.index(strategy))
        chain = []
        for step in range(1, args.prune_steps + 1):
            forced = bn_levels[step - 1] if strategy == "random_same" else None
            try:
                network, level = pruning.prune_step(network, strategy, args.prune_fraction, generator, level=forced)
            except ValueError as error:  # nothing left to prune at the level asked for
                print(f"{strategy} seed {seed}: stopped at step {step}: {error}", flush=True)
                break
            if strategy == "bn":
                bn_levels.append(level)
            finetune.network = network.config
            folder = work / f"prune_{strategy}_s{seed}_step{step}"
            row = run_training(args, cache, folder, finetune, start=network)
            chain.append({"step": step, "level": level, **row})
            network = load_trained(folder, network.config, device)
        chains[strategy] = chain
    return chains


# ----------------------------------------------------------------------------- summary

def mean_std(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def aggregate(rows: list[dict]) -> dict:
    labels = rows[0]["per_label"].keys()
    return {
        "parameters": rows[0]["parameters"],
        "channels": rows[0]["channels"],
        "mean_dice": mean_std([r["mean_dice"] for r in rows]),
        "per_label": {label: mean_std([r["per_label"][label] for r in rows]) for label in labels},
        "seeds": len(rows),
        "epochs_trained": [r["epochs"] for r in rows],
    }


def summarise(args, runs: dict, pruned: dict, models: dict) -> dict:
    by_model = {name: aggregate([runs[(name, seed)] for seed in args.seeds]) for name in models}
    result = {"finding1": {}, "finding2": {}, "finding3": {}}
    unet_name = f"unet_w{args.unet_width}"
    result["finding1"] = {name: by_model[name] for name in models if not name.startswith("narrow")}
    for name in models:
        if name.startswith("narrow"):
            width = int(name.rsplit("_w", 1)[1])
            result["finding3"][name] = {"narrow_unet": by_model[name], "lunet": by_model[f"lunet_w{width}"]}
    if pruned:
        start = by_model[unet_name]
        for strategy in pruning.STRATEGIES:
            steps = min(len(pruned[seed][strategy]) for seed in args.seeds)
            curve = [{"step": 0, **start}]
            for index in range(steps):
                rows = [pruned[seed][strategy][index] for seed in args.seeds]
                point = aggregate(rows)
                point["parameters_mean"] = float(np.mean([r["parameters"] for r in rows]))
                point["levels"] = [r["level"] for r in rows]
                curve.append({"step": index + 1, **point})
            result["finding2"][strategy] = curve
    return result


def run_seeds_in_parallel(args, argv: list[str]) -> None:
    """One child process per seed (at most args.jobs at a time), into the same --work."""
    import subprocess

    pending, running = list(args.seeds), []
    while pending or running:
        while pending and len(running) < args.jobs:
            seed = pending.pop(0)
            child = [sys.executable, __file__, *argv, "--seeds", str(seed), "--jobs", "1", "--page", "", "--plot", "",
                     "--results", str(Path(args.work) / f"partial_seed{seed}.json")]
            log = open(Path(args.work) / f"seed{seed}.log", "a")
            running.append((seed, subprocess.Popen(child, stdout=log, stderr=subprocess.STDOUT), log))
        time.sleep(2)
        for item in list(running):
            seed, process, log = item
            if process.poll() is not None:
                log.close()
                running.remove(item)
                if process.returncode:
                    raise RuntimeError(f"seed {seed} failed (exit {process.returncode}); see {args.work}/seed{seed}.log")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    started = time.time()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    cache = data if data.suffix == ".npz" else work / "cache.npz"
    if data.suffix != ".npz" and not cache.exists():
        from LUnetSegmentationLib.training.data import build_cache
        from LUnetSegmentationLib.runtime.preprocess import PreprocessingConfig

        build_cache(data, cache, PreprocessingConfig())
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    args.device = str(device)
    if args.jobs > 1 and len(args.seeds) > 1:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        run_seeds_in_parallel(args, argv)  # afterwards every training below is found finished
    models = planned_models(args)
    runs = {}
    for seed in args.seeds:
        for name, network in models.items():
            config = base_config(args, seed)
            config.network = network
            runs[(name, seed)] = run_training(args, cache, work / f"{name}_s{seed}", config)
    write_results(args, argv, started, device, runs, {}, models, final=False)  # kept if pruning fails
    pruned = {}
    if "2" in args.findings:
        for seed in args.seeds:
            pruned[seed] = run_pruning(args, cache, work, seed, models[f"unet_w{args.unet_width}"], device)
    write_results(args, argv, started, device, runs, pruned, models, final=True)
    return 0


def write_results(args, argv, started, device, runs, pruned, models, final: bool) -> None:
    result = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "python experiments/paper_findings.py " + " ".join(argv),
            "smoke": args.smoke,
            "complete": final,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "seeds": args.seeds,
            "epochs": args.epochs,
            "patience": args.patience,
            "min_epochs": args.min_epochs if args.patience else None,
            "finetune_epochs": args.finetune_epochs or max(1, args.epochs // 5),
            "prune_steps": args.prune_steps,
            "prune_fraction": args.prune_fraction,
            "levels": args.levels,
            "max_cases": args.max_cases,
            "train_config": base_config(args, args.seeds[0]).to_dict(),
            "dice": "final model on the seed's validation split, no mirroring; labels 1 anterior, 2 posterior",
            "paper": PAPER,
            "seconds_this_invocation": None,
        },
        **summarise(args, runs, pruned, models),
        "runs": {f"{name}_s{seed}": row for (name, seed), row in runs.items()},
        "pruning_runs": {str(seed): chains for seed, chains in pruned.items()},
    }
    result["meta"]["seconds_this_invocation"] = round(time.time() - started, 1)
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    if not final:
        return
    import results_page

    if args.plot:
        print(results_page.write_plot(result, Path(args.plot)))
    if args.page:
        results_page.write_page(Path(args.page), findings=result, plot=Path(args.plot) if args.plot else None)
        print(f"wrote {args.page}")


if __name__ == "__main__":
    sys.exit(main())
