"""Speed and memory of the shipped LUnet against a standard Unet and an nnU-Net-sized Unet.

    python benchmarks/speed.py [--fast] [--device cpu|cuda] --out FILE.json

Needs torch and numpy only (no SimpleITK, no installed package: it puts the repository's
LUnetSegmentation/ folder on sys.path itself), so it runs on a bare GPU server.

Models (all built by LUnetSegmentationLib.runtime.model from a NetworkConfig):
- lunet: the shipped model, rebuilt from the "network" entry of its model card
  (4 levels, 16 channels at every level).
- unet: the standard Unet baseline, meaning the classic Ronneberger layout with the same
  depth, convolutions and first-level width as the shipped LUnet but channels doubling at
  each level down (16-32-64-128). This isolates what the constant width buys. (The paper's
  own baseline, 4-8-16-32-64 with 5 levels, is a different depth, so it is not used here.)
- nnunet: an nnU-Net-sized 3D Unet, 4 levels 32-64-128-256, 2 convolutions per level.

Figures per model: trainable parameters; multiply-accumulates of the convolutions (forward
hooks on the meta device, so nothing is computed); inference latency (median after warm-up)
and peak memory for one hippocampus crop and for a whole-brain 1 mm volume through
`inference.predict_probabilities` (tiled, no mirroring: mirroring multiplies every model's
cost by 8); training-step time (forward, Dice+CE loss of `train.dice_ce_loss`, backward,
AdamW step; augmentation excluded since it does not depend on the model); the largest
training batch whose peak memory fits a fixed budget. Every figure is also given as a ratio
to the standard Unet measured in the same run.

Peak memory: CUDA: torch.cuda.max_memory_allocated above what was allocated before the
call. CPU: the process's high-water mark of resident memory (VmHWM, reset before each call
through /proc/self/clear_refs) above the resident size before the call; glibc is told to
serve every allocation over 128 KiB with mmap so freed tensors leave the resident set and
calls do not hide each other's peaks. Where /proc/self/clear_refs is not writable, each
CPU measurement runs in a fresh subprocess and ru_maxrss is used instead.

On CPU the whole-brain figures are estimated by default (tile count x median latency of one
tile; peak = one tile's peak + the accumulators predict_probabilities keeps), because one
whole-brain pass of the larger models takes minutes on a small CPU; `--whole-brain measure`
runs it for real. On CUDA it is always measured.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "LUnetSegmentation"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from LUnetSegmentationLib.runtime.inference import _tile_starts, predict_probabilities  # noqa: E402
from LUnetSegmentationLib.runtime.model import NetworkConfig, build_network, count_parameters  # noqa: E402
from LUnetSegmentationLib.training.train import dice_ce_loss  # noqa: E402

CARD = REPO / "LUnetSegmentation" / "Resources" / "Models" / "hippocampus_lunet.json"
BASELINE = "unet"
MiB = 2**20

# Figures that get a ratio to the baseline (all "lower is better" except max_train_batch).
RATIO_KEYS = [
    "parameters",
    "macs_crop",
    "macs_whole",
    "crop_latency_s",
    "crop_cpu_s",
    "crop_peak_bytes",
    "whole_latency_s",
    "whole_cpu_s",
    "whole_peak_bytes",
    "train_step_s",
    "train_step_cpu_s",
    "train_peak_bytes",
    "max_train_batch",
]

SETTINGS = {
    # fast: the CI smoke test (well under a minute on 2 CPU cores); figures are not meaningful.
    "fast": dict(crop=[16, 24, 16], whole=[32, 32, 32], tile=24, crop_repeats=2, whole_repeats=1,
                 train_batch=1, train_repeats=1, budget_mib={"cpu": 64, "cuda": 64}, explore_repeats=1),
    "full": dict(crop=[48, 64, 48], whole=[192, 224, 192], tile=96, crop_repeats=5, whole_repeats=1,
                 train_batch=2, train_repeats=3, budget_mib={"cpu": 1024, "cuda": 16384}, explore_repeats=3),
}
CUDA_FULL_OVERRIDES = dict(crop_repeats=20, whole_repeats=3, train_batch=16, train_repeats=10)


def model_configs() -> dict[str, NetworkConfig]:
    card = json.loads(CARD.read_text())
    lunet = NetworkConfig.from_dict(card["network"])
    base = dict(in_channels=lunet.in_channels, num_classes=lunet.num_classes, spatial_dims=3, dropout=lunet.dropout,
                convs_per_level=lunet.convs_per_level)
    unet = NetworkConfig(architecture="Unet", levels=lunet.levels, width=lunet.width, **base)
    nnunet = NetworkConfig(architecture="Unet", levels=4, width=32, **{**base, "convs_per_level": 2})
    return {"lunet": lunet, "unet": unet, "nnunet": nnunet}


DESCRIPTIONS = {
    "lunet": "shipped LUnet (model card network entry)",
    "unet": "standard Unet: same depth/convs/first width, channels doubling",
    "nnunet": "nnU-Net-sized Unet: 4 levels 32-64-128-256, 2 convs/level",
}


# ----------------------------------------------------------------------------- counting

def count_macs(config: NetworkConfig, shape: list[int]) -> int:
    """Multiply-accumulates of all (transposed) convolutions for one input of `shape`.

    Runs on the meta device: shapes propagate, nothing is computed or allocated."""
    with torch.device("meta"):
        network = build_network(config).eval()
    total = 0

    def conv_hook(module, inputs, output):
        nonlocal total
        kernel = int(np.prod(module.kernel_size))
        if isinstance(module, nn.ConvTranspose3d):
            # every input voxel scatters into a kernel-sized block of every output channel
            total += inputs[0][0].numel() * (module.out_channels // module.groups) * kernel
        else:
            total += output[0].numel() * (module.in_channels // module.groups) * kernel

    for module in network.modules():
        if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
            module.register_forward_hook(conv_hook)
    network(torch.empty(1, config.in_channels, *shape, device="meta"))
    return int(total)


def tile_layout(config: NetworkConfig, shape: list[int], tile_size: int) -> tuple[list[int], int]:
    """The tile predict_probabilities uses for `shape` and how many of them it runs."""
    multiple = 2 ** (config.levels - 1)
    padded = [s + (-s) % multiple for s in shape]
    tile = [min(s, max(tile_size - tile_size % multiple, multiple)) for s in padded]
    step = [max(multiple, t // 2) for t in tile]
    count = int(np.prod([len(_tile_starts(s, t, st)) for s, t, st in zip(padded, tile, step)]))
    return tile, count


# ----------------------------------------------------------------------------- memory

class CpuPeak:
    """Peak resident memory of a call, in-process (see the module docstring)."""

    def __init__(self):
        self.available = False
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: fixed, so big frees go back to the OS
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.available = True
        except (OSError, AttributeError):
            pass

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    def before(self) -> None:
        gc.collect()
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset VmHWM to the current resident size
        self._before = self._status("VmRSS")

    def after(self) -> int:
        return max(0, self._status("VmHWM") - self._before)


class CudaPeak:
    def before(self) -> None:
        torch.cuda.synchronize()
        gc.collect()
        torch.cuda.empty_cache()
        self._before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()

    def after(self) -> int:
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - self._before


def subprocess_peak(kind: str, config: NetworkConfig, shape: list[int], batch: int, tile: int) -> int:
    """Fallback for CPU peaks without clear_refs: one fresh process per measurement."""
    request = json.dumps(dict(kind=kind, config=config.to_dict(), shape=shape, batch=batch, tile=tile))
    done = subprocess.run([sys.executable, __file__, "--probe", request], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def _probe_main(request: str) -> None:
    import resource

    spec = json.loads(request)
    config = NetworkConfig.from_dict(spec["config"])
    network = build_network(config)
    work = _work(spec["kind"], network, config, torch.device("cpu"), spec["shape"], spec["batch"], spec["tile"])
    gc.collect()
    before = CpuPeak._status("VmRSS")
    work()
    print(max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before))


# ----------------------------------------------------------------------------- work items

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _work(kind: str, network, config: NetworkConfig, device: torch.device, shape: list[int], batch: int, tile: int):
    """A zero-argument callable doing one unit of the measured work."""
    rng = np.random.default_rng(0)
    if kind == "infer":  # the project's inference path, one volume, no mirroring
        volume = rng.standard_normal(shape).astype(np.float32)
        return lambda: predict_probabilities(network, volume, device=device, mirror=False, tile_size=tile)
    if kind == "forward":  # one bare network forward (a single tile)
        x = torch.randn(batch, config.in_channels, *shape, device=device)

        def forward():
            network.eval()
            with torch.inference_mode():
                out = network(x)
            _sync(device)
            return out.shape

        return forward
    if kind == "train":
        optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
        x = torch.randn(batch, config.in_channels, *shape, device=device)
        y = torch.randint(0, config.num_classes, (batch, *shape), device=device)
        amp = device.type == "cuda"  # as train(): bf16 autocast on CUDA

        def step():
            network.train()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = network(x)
            loss = dice_ce_loss(logits.float(), y, config.num_classes)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            _sync(device)
            return float(loss.detach())

        return step
    raise ValueError(kind)


def timed(fn, repeats: int, warmup: int = 1, peak=None) -> dict:
    """Median latency after warm-up; with `peak` (a Bench), also the peak memory of the last
    (warm) repeat, so no extra run is spent on measuring memory."""
    for _ in range(warmup):
        fn()
    samples, cpu = [], []
    for index in range(repeats):
        measure = peak is not None and index == repeats - 1
        if measure:
            peak.before()
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        samples.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        if measure:
            peak_bytes = peak.after()
    # CPU time of this process: on a machine shared with other jobs it varies less than wall time
    result = {"median_s": statistics.median(samples), "samples_s": [round(s, 5) for s in samples],
              "cpu_median_s": statistics.median(cpu)}
    if peak is not None:
        result["peak_bytes"] = int(peak_bytes)
    return result


class Bench:
    def __init__(self, device: torch.device, settings: dict, whole_mode: str):
        self.device, self.s, self.whole_mode = device, settings, whole_mode
        self.peak = CpuPeak() if device.type == "cpu" else CudaPeak()
        self.in_process = device.type == "cuda" or self.peak.available

    def timed(self, kind, network, config, shape, batch=1, tile=0, repeats=1, warmup=1) -> dict:
        """Latency of one kind of work, with the peak memory of its last repeat."""
        work = _work(kind, network, config, self.device, shape, batch, tile)
        result = timed(work, repeats, warmup, self.peak if self.in_process else None)
        if not self.in_process:
            result["peak_bytes"] = subprocess_peak(kind, config, shape, batch, tile)
        return result

    def peak_of(self, kind, network, config, shape, batch=1, tile=0) -> int:
        if self.in_process:
            work = _work(kind, network, config, self.device, shape, batch, tile)
            self.peak.before()
            work()
            return int(self.peak.after())
        return subprocess_peak(kind, config, shape, batch, tile)

    def largest_batch(self, network, config, shape, budget: int, cap: int = 4096) -> dict:
        """Largest batch whose training-step peak fits `budget`: doubling, then bisection."""
        probes = {}

        def fits(batch: int) -> bool:
            if batch not in probes:
                try:
                    probes[batch] = self.peak_of("train", network, config, shape, batch)
                except torch.cuda.OutOfMemoryError:
                    probes[batch] = None
                    torch.cuda.empty_cache()
            return probes[batch] is not None and probes[batch] <= budget

        if not fits(1):
            return {"max_train_batch": 0, "probes": probes}
        low, high = 1, 2
        while high <= cap and fits(high):
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        return {"max_train_batch": low, "probes": {str(k): v for k, v in sorted(probes.items())}}

    def model(self, name: str, config: NetworkConfig) -> dict:
        s, device = self.s, self.device
        torch.manual_seed(0)
        network = build_network(config).to(device)
        row = {"description": DESCRIPTIONS[name], "network": config.to_dict(), "parameters": count_parameters(network)}
        row["macs_crop"] = count_macs(config, s["crop"])
        tile, tiles = tile_layout(config, s["whole"], s["tile"])
        row["whole_tile"], row["whole_tiles"] = tile, tiles
        row["macs_whole"] = tiles * count_macs(config, tile)  # what the tiled pass computes
        row["macs_whole_untiled"] = count_macs(config, s["whole"])

        row["crop_latency"] = self.timed("infer", network, config, s["crop"], tile=s["tile"], repeats=s["crop_repeats"])
        row["crop_latency_s"] = row["crop_latency"]["median_s"]
        row["crop_cpu_s"] = row["crop_latency"]["cpu_median_s"]
        row["crop_peak_bytes"] = row["crop_latency"]["peak_bytes"]

        if self.whole_mode == "measure":
            row["whole_latency"] = self.timed("infer", network, config, s["whole"], tile=s["tile"],
                                              repeats=s["whole_repeats"], warmup=1 if device.type == "cuda" else 0)
            row["whole_latency_s"] = row["whole_latency"]["median_s"]
            row["whole_cpu_s"] = row["whole_latency"]["cpu_median_s"]
            row["whole_peak_bytes"] = row["whole_latency"]["peak_bytes"]
            row["whole_method"] = "measured: predict_probabilities over the whole volume"
        else:
            row["tile_latency"] = self.timed("forward", network, config, tile, repeats=s["whole_repeats"])
            row["whole_latency_s"] = tiles * row["tile_latency"]["median_s"]
            row["whole_cpu_s"] = tiles * row["tile_latency"]["cpu_median_s"]
            padded = int(np.prod([d + (-d) % 2 ** (config.levels - 1) for d in s["whole"]]))
            accumulators = 4 * padded * (config.num_classes + 1 + 1)  # probability sum, counts, input
            row["whole_peak_bytes"] = row["tile_latency"]["peak_bytes"] + accumulators
            row["whole_method"] = "estimated: tiles x median tile latency; peak of one tile + accumulators"

        row["train_batch"] = s["train_batch"]
        row["train_step"] = self.timed("train", network, config, s["crop"], s["train_batch"], repeats=s["train_repeats"])
        row["train_step_s"] = row["train_step"]["median_s"]
        row["train_step_cpu_s"] = row["train_step"]["cpu_median_s"]
        row["train_peak_bytes"] = row["train_step"]["peak_bytes"]
        _work("train", network, config, device, s["crop"], 1, 0)()  # warm batch-1 shapes before probing
        budget = s["budget_mib"][device.type] * MiB
        search = self.largest_batch(network, config, s["crop"], budget)
        row["max_train_batch"] = search["max_train_batch"]
        row["batch_search_probes_bytes"] = search["probes"]
        return row


# ----------------------------------------------------------------------------- exploration

def explore(bench: Bench, config: NetworkConfig, fast: bool) -> list[dict]:
    """Before/after latencies of inference settings on the shipped LUnet (one crop unless noted)."""
    s, device, repeats = bench.s, bench.device, bench.s["explore_repeats"]
    network = build_network(config).to(device).eval()
    x = torch.randn(1, config.in_channels, *s["crop"], device=device)
    results = []

    def forward_with(model, tensor, context):
        def run():
            with context():
                out = model(tensor)
            _sync(device)
            return out

        return run

    def record(name, baseline_fn, variant_fn, note=""):
        # interleaved (before, after, before, after, ...) so load drifting on a shared machine
        # hits both sides alike
        baseline_fn(), variant_fn()
        runs = [(timed(baseline_fn, 1, 0)["median_s"], timed(variant_fn, 1, 0)["median_s"]) for _ in range(repeats)]
        before, after = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        results.append({"name": name, "before_s": before, "after_s": after, "speedup": before / after,
                        "kept": before / after > 1.05, "note": note})

    import contextlib

    plain = forward_with(network, x, contextlib.nullcontext)  # autograd on, as a naive caller would
    no_grad = forward_with(network, x, torch.no_grad)
    inference = forward_with(network, x, torch.inference_mode)
    record("no_grad vs autograd on", plain, no_grad)
    record("inference_mode vs no_grad", no_grad, inference, "predict_probabilities already uses inference_mode")

    cl_net = build_network(config).to(device).eval().to(memory_format=torch.channels_last_3d)
    cl_net.load_state_dict(network.state_dict())
    cl_x = x.contiguous(memory_format=torch.channels_last_3d)
    record("channels_last_3d", inference, forward_with(cl_net, cl_x, torch.inference_mode))

    if device.type == "cpu":
        threads, cores = torch.get_num_threads(), os.cpu_count() or 1

        def with_threads(count):
            def run():
                torch.set_num_threads(count)
                try:
                    return inference()
                finally:
                    torch.set_num_threads(threads)

            return run

        if cores > 1:
            record(f"{cores} threads vs 1 thread", with_threads(1), with_threads(cores), "before = 1 thread")
        try:
            with torch.inference_mode():
                frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(network, x)))
                difference = float((frozen(x) - network(x)).abs().max())
            record("TorchScript trace+freeze+optimize_for_inference", inference,
                   forward_with(frozen, x, torch.inference_mode),
                   f"oneDNN (mkldnn) convolutions; traced for one input shape (one trace per tile shape); "
                   f"max |logit difference| {difference:.1e}")
        except Exception as error:  # TorchScript is optional: record why it was not measured
            results.append({"name": "TorchScript", "error": f"{type(error).__name__}: {error}"[:300], "kept": False})
    else:
        for dtype in (torch.float16, torch.bfloat16):
            def autocast(dtype=dtype):
                return torch.autocast("cuda", dtype=dtype)

            def half_context(dtype=dtype):
                stack = contextlib.ExitStack()
                stack.enter_context(torch.inference_mode())
                stack.enter_context(autocast())
                return stack

            record(f"autocast {str(dtype).split('.')[-1]}", inference, forward_with(network, x, half_context))

        def cudnn(flag):
            def run():
                torch.backends.cudnn.benchmark = flag  # autotuned choices are cached per shape
                return inference()

            return run

        record("cudnn.benchmark", cudnn(False), cudnn(True))
        torch.backends.cudnn.benchmark = False

    # Tile size for the whole-brain volume: predict_probabilities overlaps tiles by half, so a
    # bigger tile means fewer voxels computed twice. Estimated (CPU) or measured (CUDA).
    sizes = [16, 32] if fast else ([64, 96, 128] if device.type == "cpu" else [64, 96, 128, 160, 256])
    tiles_out = []
    for size in sizes:
        tile, count = tile_layout(config, s["whole"], size)
        if device.type == "cpu":
            per_tile = timed(_work("forward", network, config, device, tile, 1, 0), 1)["median_s"]
            latency, method = per_tile * count, "estimated: tiles x tile latency"
        else:
            latency = timed(_work("infer", network, config, device, s["whole"], 1, size), repeats)["median_s"]
            method = "measured"
        computed = count * int(np.prod(tile)) / float(np.prod(s["whole"]))
        tiles_out.append({"tile_size": size, "tile": tile, "tiles": count, "voxels_computed_per_voxel": computed,
                          "whole_latency_s": latency, "method": method})
    default = next((t for t in tiles_out if t["tile_size"] == s["tile"]), tiles_out[0])
    best = min(tiles_out, key=lambda t: t["whole_latency_s"])
    results.append({"name": "whole-brain tile size", "tiles": tiles_out, "before_s": default["whole_latency_s"],
                    "after_s": best["whole_latency_s"], "speedup": default["whole_latency_s"] / best["whole_latency_s"],
                    "best_tile_size": best["tile_size"], "kept": best["tile_size"] != s["tile"] and
                    default["whole_latency_s"] / best["whole_latency_s"] > 1.05,
                    "note": "before = the model card's tile size"})
    return results


# ----------------------------------------------------------------------------- report

def ratios(models: dict) -> dict:
    base = models[BASELINE]
    return {name: {key: (row[key] / base[key] if base.get(key) else None) for key in RATIO_KEYS} for name, row in models.items()}


def format_table(result: dict) -> str:
    def size(value):
        return f"{value / MiB:,.0f} MiB" if value is not None else "-"

    columns = [
        ("parameters", "params", lambda v: f"{v:,}"),
        ("macs_crop", "GMAC crop", lambda v: f"{v / 1e9:.2f}"),
        ("crop_latency_s", "crop s", lambda v: f"{v:.3f}"),
        ("crop_peak_bytes", "crop peak", size),
        ("whole_latency_s", "whole s", lambda v: f"{v:.1f}"),
        ("whole_peak_bytes", "whole peak", size),
        ("train_step_s", "train step s", lambda v: f"{v:.3f}"),
        ("train_peak_bytes", "train peak", size),
        ("max_train_batch", "max batch", str),
    ]
    lines = ["| model | " + " | ".join(c[1] for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in result["models"].items():
        cells = []
        for key, _, fmt in columns:
            ratio = result["ratios"][name][key]
            cells.append(f"{fmt(row[key])} ({ratio:.2f}x)" if ratio is not None else fmt(row[key]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny volumes and few repeats (CI smoke test)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--whole-brain", choices=["auto", "measure", "estimate"], default="auto",
                        help="auto: measure on CUDA and in --fast, estimate from one tile on full CPU runs")
    parser.add_argument("--models", default="lunet,unet,nnunet", help="comma-separated subset (unet is always run)")
    parser.add_argument("--no-explore", action="store_true")
    parser.add_argument("--note", default="", help="free text stored in the JSON (e.g. machine load)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default; --fast uses 1, steadier on a shared machine)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        _probe_main(args.probe)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    device = torch.device(args.device)
    threads = args.threads or (1 if args.fast else 0)
    if threads:
        torch.set_num_threads(threads)
    settings = dict(SETTINGS["fast" if args.fast else "full"])
    if device.type == "cuda" and not args.fast:
        settings.update(CUDA_FULL_OVERRIDES)
    whole_mode = args.whole_brain
    if whole_mode == "auto":
        whole_mode = "measure" if (device.type == "cuda" or args.fast) else "estimate"
    bench = Bench(device, settings, whole_mode)
    configs = model_configs()
    wanted = [m for m in configs if m in set(args.models.split(",")) | {BASELINE}]

    started = time.time()
    models = {}
    for name in wanted:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        models[name] = bench.model(name, configs[name])
    exploration = [] if args.no_explore else explore(bench, configs["lunet"], args.fast)
    result = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if argv is None else "speed.main",
            "fast": args.fast,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "baseline": BASELINE,
            "settings": settings,
            "memory_budget_bytes": settings["budget_mib"][device.type] * MiB,
            "memory_method": ("torch.cuda.max_memory_allocated above the allocation before the call" if device.type == "cuda"
                              else "VmHWM reset via /proc/self/clear_refs, above VmRSS before the call" if bench.in_process
                              else "ru_maxrss of a fresh subprocess above its VmRSS before the call"),
            "inference": "predict_probabilities, mirror=False (the model card enables mirroring: x8 for every model)",
            "train_step": "forward + train.dice_ce_loss + backward + AdamW step, random data, no augmentation"
                          + ("; bf16 autocast as in train()" if device.type == "cuda" else ""),
            "batch_search": "doubling then bisection on the measured peak of one training step",
            "whole_brain": whole_mode,
            "note": args.note,
            "seconds": None,
        },
        "models": models,
        "ratios": ratios(models),
        "exploration": exploration,
    }
    result["meta"]["seconds"] = round(time.time() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(format_table(result))
    for item in exploration:
        if "speedup" in item:
            print(f"  {item['name']}: {item['before_s']:.3f} s -> {item['after_s']:.3f} s "
                  f"(x{item['speedup']:.2f}{', kept' if item['kept'] else ''})")
    print(f"wrote {out} in {result['meta']['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
