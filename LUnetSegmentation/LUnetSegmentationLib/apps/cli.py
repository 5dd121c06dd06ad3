"""Command line: `python -m LUnetSegmentationLib segment | train | evaluate | ...` (no Qt, no Slicer app).

`segment` imports neither slicer-core nor torch-based training code: its whole process
(interpreter, imports, reading, localization, network, writing) is what a cohort pays per scan.

The Slicer extension ships this file but not training/, apps/bids/ or apps/web/: there the
commands that need them stay listed and say how to get the source install.
"""
from __future__ import annotations

import time

_STARTED = time.perf_counter()  # before the heavy imports: --timings reports what they cost

import argparse  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def _train(args) -> int:
    from ..training.train import load_config, train

    config = load_config(args.config)
    if args.epochs:
        config.epochs = args.epochs
    if args.time_budget:
        config.time_budget_minutes = args.time_budget
    summary = train(args.data, config, args.out, device=args.device, quiet=args.quiet)
    best = summary["best"]
    print(
        f"trained {summary['parameters']} parameters on {summary['train_cases']} cases in {summary['seconds']:.0f} s "
        f"({summary['device']}); best validation mean Dice {best['mean_dice']:.4f} at epoch {best.get('epoch')}; "
        f"weights in {args.out}/best.pt"
    )
    return 0


def _evaluate(args) -> int:
    from ..training.evaluate import evaluate

    mirror = None if args.mirror is None else args.mirror == "on"
    evaluate(args.data, model=args.model, case_ids=args.cases, device=args.device, mirror=mirror, out=args.out)
    return 0


def _stop_on_sigterm() -> None:
    """SIGTERM (a job scheduler's kill, `timeout`) ends a batch like Ctrl-C: temporary files
    are removed and the summary lists what was finished."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def _segment(args) -> int:
    from ..files.batch import BatchInterrupted, segment_files

    _stop_on_sigterm()

    roi = None
    if args.roi is not None:
        roi = (args.roi[:3], args.roi[3:])
    imports_done = time.perf_counter()
    try:
        rows = segment_files(
            args.inputs, args.out, model=args.model, device=args.device, labelmap=args.labelmap,
            showProgress=not args.quiet, roi=roi, series=args.series, dicomSeg=args.dicom_seg,
        )
    except BatchInterrupted as interrupted:
        done = sum(row.get("status") == "ok" for row in interrupted.rows)
        print(
            f"Interrupted: {done} of {len(interrupted.rows)} case(s) finished and kept (summary in {interrupted.summary}). "
            "Run the same command again to do the rest: complete outputs are skipped, nothing is overwritten.",
            file=sys.stderr,
        )
        return 130
    if args.timings:
        _write_timings(args.timings, rows, imports_done)
    failed = [row for row in rows if row.get("status") != "ok"]
    for row in failed:
        print(f"FAILED {row.get('input')}: {row.get('error')}", file=sys.stderr)
    for row in rows:
        if row.get("warnings"):
            print(f"WARNING {row.get('input')}: {row['warnings']}", file=sys.stderr)
    print(f"{len(rows) - len(failed)} of {len(rows)} case(s) segmented; summary in {args.out}/summary.csv")
    return 1 if failed else 0


def _write_timings(path, rows, imports_done: float) -> None:
    """Stage timings for benchmarks/wholehead.py: imports (process start to the first case,
    interpreter start-up excluded) and per case read / localize / network / write seconds."""
    stages = ("read_s", "localize_s", "network_s", "write_s", "read_cpu_s", "localize_cpu_s", "network_cpu_s", "write_cpu_s")
    cases = [{"case": row["case"], **{k: row[k] for k in stages if k in row}, "total_s": float(row.get("seconds") or 0)} for row in rows]
    from ..files.outputs import write_atomic

    text = json.dumps({"imports_s": round(imports_done - _STARTED, 3), "cases": cases}, indent=1)
    write_atomic(Path(path), lambda tmp: tmp.write_text(text), overwrite=True)


SOURCE_URL = "https://github.com/lunet-segmentation/SlicerLUnetSegmentation"


def _installed(layer: str) -> bool:
    """Whether a layer of the package is here: the Slicer extension leaves out training/,
    apps/bids/ and apps/web/ (LUnetSegmentation/CMakeLists.txt)."""
    package = __package__.rpartition(".")[0]  # LUnetSegmentationLib
    return importlib.util.find_spec(f"{package}.{layer}") is not None


# The environment each source-only command runs in: the web app has its own (trame-slicer pins
# its own slicer-core), everything else runs in .venv.
SETUP = {"apps.web": ("scripts/setup_web_env.sh", ".venv-web")}
DEFAULT_SETUP = ("scripts/setup_env.sh", ".venv")


def _needs_source_install(command: str, layer: str, args=None) -> int:
    script, venv = SETUP.get(layer, DEFAULT_SETUP)
    print(
        f"error: `{command}` needs the full source install of LUnetSegmentation: this copy (the Slicer "
        f"extension) ships only what segmentation needs, without {layer.replace('.', '/')}/. To get it: "
        f"`git clone {SOURCE_URL}`, then in that folder run `bash {script}` and "
        f"`{venv}/bin/python -m LUnetSegmentationLib {command} ...` (see its README).",
        file=sys.stderr,
    )
    return 2


def _add_source_only(commands, command: str, layer: str, help_text: str) -> None:
    """A command whose code is not installed: still listed, takes any arguments, says what to do."""
    parser = commands.add_parser(command, help=f"{help_text} (source install only)", add_help=False)
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(run=functools.partial(_needs_source_install, command, layer), any_arguments=True)


def _serve(args) -> int:
    try:
        from .web.app import is_loopback, serve
    except ImportError as error:
        print(
            f"error: the web app needs the optional web environment ({error.name or error} is missing). "
            "Run `bash scripts/setup_web_env.sh`, then `.venv-web/bin/python -m LUnetSegmentationLib serve ...`.",
            file=sys.stderr,
        )
        return 2
    if not is_loopback(args.host):
        # Anyone who can reach this address can upload files and read results: say so loudly.
        print(
            f"WARNING: listening on {args.host}, not on this machine's loopback: anyone who can reach "
            f"{args.host}:{args.port} can upload scans and download results. There is no login; use an SSH "
            "tunnel to 127.0.0.1 instead where you can.",
            file=sys.stderr,
        )
    serve(args.inputs, host=args.host, port=args.port, model=args.model, device=args.device,
          maxUploadMb=args.max_upload_mb, openBrowser=args.open_browser)
    return 0


def _add_training_parsers(commands) -> None:
    """train, evaluate, evaluate-wholehead: the training/ layer, imported only when they run."""
    train = commands.add_parser("train", help="train a network on a Decathlon-format dataset")
    train.add_argument("--data", required=True, help="Decathlon folder, release .tar, or a preprocessed cache .npz")
    train.add_argument("--config", default="hippocampus_lunet", help="JSON config file, or a name in configs/")
    train.add_argument("--out", required=True, help="output folder (checkpoints; an existing run is resumed)")
    train.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    train.add_argument("--epochs", type=int, default=0, help="override the config's epochs")
    train.add_argument("--time-budget", type=float, default=0.0, help="minutes: shorten the schedule to fit")
    train.add_argument("--quiet", action="store_true")
    train.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help="full details of errors")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="Dice and HD95 per label on a labelled Decathlon folder")
    evaluate.add_argument("--data", required=True, help="folder with imagesTr/ and labelsTr/ (dataset.json optional)")
    evaluate.add_argument("--model", default=None, help="shipped model id, card .json or training folder (default: shipped hippocampus model)")
    evaluate.add_argument("--cases", nargs="*", default=None, help="case ids to evaluate (default: all)")
    evaluate.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    evaluate.add_argument("--mirror", choices=["on", "off"], default=None, help="test-time mirroring (default: the model card's)")
    evaluate.add_argument("--out", default="results.json", help="JSON results file")
    evaluate.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help="full details of errors")
    evaluate.set_defaults(run=_evaluate)

    from ..training.evaluate_wholehead import add_parser as add_evaluate_wholehead

    add_evaluate_wholehead(commands)


def _add_serve_parser(commands) -> None:
    """serve: the web app (apps/web/, its own environment), imported only when it runs."""
    serve = commands.add_parser("serve", help="the one-click panel as a local web app (needs .venv-web)")
    serve.add_argument("inputs", nargs="*", help="volumes to open at start (saved next to themselves)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    serve.add_argument("--model", default=None)
    serve.add_argument("--max-upload-mb", type=float, default=512, help="largest upload accepted (MB)")
    serve.add_argument("--open-browser", action="store_true")
    serve.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help="full details of errors")
    serve.set_defaults(run=_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m LUnetSegmentationLib", description=__doc__)
    parser.add_argument("--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    if _installed("training"):
        _add_training_parsers(commands)
    else:
        _add_source_only(commands, "train", "training", "train a network on a Decathlon-format dataset")
        _add_source_only(commands, "evaluate", "training", "Dice and HD95 per label on a labelled Decathlon folder")
        _add_source_only(commands, "evaluate-wholehead", "training", "per-side Dice/HD95/volume ratio against FreeSurfer labels")

    segment = commands.add_parser("segment", help="segment MRI files (NIfTI, NRRD, .mgz) into DIR/<case>.seg.nrrd")
    segment.add_argument("inputs", nargs="+", help="input volumes, or folders each holding a DICOM series (source install)")
    segment.add_argument("--out", required=True, help="output folder")
    segment.add_argument("--labelmap", action="store_true", help="also write DIR/<case>.nii.gz with the label values")
    segment.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    segment.add_argument("--model", default=None, help="shipped model id, card .json or training folder")
    segment.add_argument(
        "--roi", nargs=6, type=float, metavar=("R", "A", "S", "SIZE_R", "SIZE_A", "SIZE_S"), default=None,
        help="segment only this box: centre and size in RAS mm, as Slicer shows them (same box for every input)",
    )
    segment.add_argument("--series", default=None, metavar="UID",
                         help="the DICOM series to read (SeriesInstanceUID) from folders that hold several")
    segment.add_argument("--dicom-seg", action="store_true",
                         help="also write DIR/<case>.seg.dcm, a DICOM SEG referencing the input series (DICOM inputs only)")
    segment.add_argument("--timings", default=None, metavar="FILE", help="write stage timings as JSON (benchmarks)")
    segment.add_argument("--quiet", action="store_true")
    segment.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help="full details of errors")
    segment.set_defaults(run=_segment)

    if _installed("apps.web"):
        _add_serve_parser(commands)
    else:
        _add_source_only(commands, "serve", "apps.web", "the one-click panel as a local web app")

    if _installed("apps.bids"):
        from .bids.app import add_bids_parser

        add_bids_parser(commands)
    else:
        _add_source_only(commands, "bids", "apps.bids", "BIDS App: segment a BIDS dataset on Dask")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if args.verbose:  # our own details (tracebacks of refused cases), not every library's debug output
        logging.getLogger("LUnetSegmentation").setLevel(logging.DEBUG)
    from ..runtime.preprocess import InputError
    from ..runtime.weights import WeightsError

    try:
        return args.run(args)
    except (InputError, WeightsError, FileNotFoundError) as error:
        logging.getLogger("LUnetSegmentation").debug("details", exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted (Ctrl-C). Nothing half-written was left; run the same command again to finish.", file=sys.stderr)
        return 130
    except OSError as error:  # disk full, permissions, a folder that vanished
        logging.getLogger("LUnetSegmentation").debug("details", exc_info=True)
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        print(f"error: {error.strerror or error}{where}. Check the disk space and permissions of the files and "
              "folders named, then run again.", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - the last line of defence: a message, never a traceback
        if args.verbose:
            raise
        print(f"error: {type(error).__name__}: {error}. This is unexpected; run again with --verbose for the full "
              "details and report them.", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
