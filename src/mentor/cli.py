"""The `mentor` command: glue between argparse and the library."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import textwrap

import mentor  # noqa: F401  (chooses the Keras backend before anything imports keras)
from mentor._backend import check_backend
from mentor.console import print_metrics
from mentor.errors import MentorError, UsageError

EXAMPLES = """\
examples:
  mentor demo                                   # the embedded end-to-end run (< 5 min, 2 CPU cores)
  mentor presets                                # what ships, one line each
  mentor train demo --set train.epochs=3        # a preset with an override
  mentor train my.toml --out runs/mine          # your own config file
  mentor evaluate runs/mine/model.keras --data ../data/test.npz
  mentor evaluate runs/my-distill --data cifar10:test   # teacher, student, labels-only
  mentor robustness runs/mine/model.keras --data cifar10:test --max-images 2000
  mentor status runs/mine                       # completed, running, failed or interrupted
  mentor sources                                # how to name data
  mentor config show demo > my.toml             # every key of a preset, to edit
  mentor predict runs/mine images/ --out preds.csv
  mentor evaluate runs/mine --data embedded:mnist5k   # any finished run's model(s)
  KERAS_BACKEND=tensorflow mentor export runs/mine --format tflite --out mine.tflite
backend: torch by default; set KERAS_BACKEND=jax or tensorflow to change it.
exit status: 0 success; 1 the run failed (data, files, network, training); 2 the command
line or the config is wrong (nothing was done).
"""


def _train(args):
    from mentor import recipes
    from mentor.config import to_dict
    from mentor.models import unsafe_loading
    from mentor.run_folders import RunDir, default_run_path, input_paths

    _join_processes(args)
    config, name = recipes.load_config(args.config, args.set + _runtime_overrides(args))
    inputs = input_paths(to_dict(config))
    run_dir = RunDir(args.out or default_run_path(name, inputs=inputs),
                     resume_anyway=args.resume_anyway, inputs=inputs)
    print(f"mentor: {config.recipe} run '{name}' → {run_dir.path}", flush=True)
    with unsafe_loading(args.unsafe):
        recipe = recipes.get(config.recipe)
        metrics = recipe.run(config, run_dir, name=name)
    print_metrics(metrics, run_dir.path, recipe.say(metrics))
    return 0


def _runtime_overrides(args) -> list:
    """--devices and --precision are shortcuts for --set runtime.…"""
    overrides = []
    if args.devices is not None:
        overrides.append(f"runtime.devices={args.devices}")
    if args.precision is not None:
        overrides.append(f"runtime.precision={args.precision}")
    if args.strict:
        overrides.append("data.strict=true")
    return overrides


def _join_processes(args):
    """Join the multi-process JAX job the flags or environment ask for (a no-op when none
    is asked for), first: JAX fixes its devices at its first computation."""
    from mentor.runtime import start_processes

    start_processes(args.coordinator, args.num_processes, args.process_id)


def _add_runtime_flags(p):
    p.add_argument("--devices", type=non_negative_int, metavar="N",
                   help="data-parallel devices, JAX backend (0: all visible; default 1); "
                        "train.batch_size stays the global batch")
    p.add_argument("--precision", choices=("float32", "mixed_bfloat16", "mixed_float16"),
                   help="compute precision (default float32); losses and softmaxes stay float32")
    p.add_argument("--resume-anyway", action="store_true",
                   help="resume an unfinished run in --out even though a data file or folder "
                        "it trains on changed since it started (refused by default)")
    p.add_argument("--unsafe", action="store_true",
                   help="allow model files (a teacher, a starting model) that run code on load "
                        "(Lambda layers); only for files you trust")
    p.add_argument("--strict", action="store_true",
                   help="refuse an image folder with a file that does not decode (default: "
                        "skip such files, name them in the log and count them in "
                        "metrics.json); the same as --set data.strict=true")
    jobs = p.add_argument_group("many processes (hosts), JAX backend", textwrap.fill(
        "Run the same command in every process of the job; --devices then counts each "
        "process's devices and train.batch_size stays the global batch. Process 0 writes the "
        "run directory, which every process must see at the same path (one machine, or a "
        "shared filesystem). Instead of the flags: KERAS_DISTRIBUTION_JOB_ADDRESSES, "
        "KERAS_DISTRIBUTION_NUM_PROCESSES, KERAS_DISTRIBUTION_PROCESS_ID, or "
        "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID (docs/scaling.md).", 78))
    jobs.add_argument("--coordinator", metavar="HOST:PORT",
                      help="process 0's address and a free port, the same in every process; "
                           "'auto': let JAX read the cluster's settings (TPU pod slice, "
                           "SLURM, Open MPI)")
    jobs.add_argument("--num-processes", type=positive_int, metavar="N",
                      help="how many processes the job has")
    jobs.add_argument("--process-id", type=non_negative_int, metavar="I",
                      help="this process's number, 0 … N-1 (0 writes the run directory)")


def _evaluate(args):
    from mentor.evaluate import evaluate_model, evaluate_run, model_and_run

    if args.json:  # refused now, not after minutes of evaluation whose result would be lost
        _check_output_file(args.json, "--json", [args.model, args.data],
                           mine=_is_evaluation)
    if os.path.isdir(args.model):  # a run: its models side by side
        metrics = evaluate_run(args.model, args.data, batch_size=args.batch_size,
                               unsafe=args.unsafe)
        names = [k for k in metrics if k.endswith("_acc") and k != "test_acc"] + [
            "student_teacher_agreement", "student_teacher_kl"]
        if names[0] == "model_acc":  # one model: one line, as for a .keras file
            print(f"accuracy {metrics['test_acc']:.4f} on {metrics['images']} images of "
                  f"{args.data}")
        else:
            print(f"{metrics['images']} images of {args.data}:")
        for key in names if names[0] != "model_acc" else ():
            if key in metrics:
                print(f"  {key:<25} {metrics[key]:.4f}")
    else:
        model, run = model_and_run(args.model)
        metrics = evaluate_model(model, args.data, batch_size=args.batch_size,
                                 unsafe=args.unsafe, run=run)
        print(f"accuracy {metrics['test_acc']:.4f} on {metrics['images']} images of {args.data}")
    if args.json:
        _write_file_atomically(args.json, json.dumps(metrics, indent=2) + "\n", "--json")
    return 0


# Files a result (CSV, JSON) must never replace: models, images, data, configs.
_NOT_A_RESULT = {".keras", ".h5", ".npz", ".npy", ".png", ".jpg", ".jpeg", ".bmp", ".gif",
                 ".webp", ".tif", ".tiff", ".toml", ".onnx", ".tflite", ".pb", ".mat", ".gz",
                 ".tar", ".bz2", ".zip", ".py"}


def _check_output_file(name, flag: str, inputs=(), *, create: bool = True, mine=None):
    """Refuse a result file that would destroy something: one of this command's inputs
    (the model, a run folder's files, an image or data file, and the data that run was
    trained on), or an existing file mentor did not write (`mine(path)` says whether an
    existing file is a result of the same kind, which may be replaced), or a file inside a
    run folder of mentor's. Then create the folders it goes into and check that it can be
    written there."""
    from mentor.atomic import TEMP_PREFIX
    from mentor.run_folders import _source_path, owner_of

    path = pathlib.Path(name)
    if path.is_dir():
        raise MentorError(f"{flag} {path} is a directory; give a file name, e.g. "
                          f"{flag} {path / 'metrics.json'}.")
    for spec in [*inputs, *_trained_on(inputs)]:
        given = _source_path(str(spec)) if spec is not None else None
        if given is None:
            continue
        if path.exists() and os.path.samefile(path, given):
            raise MentorError(f"{flag} {path} is an input of this command (or the data its "
                              "model trained on): writing it would destroy it. Give another "
                              "file name.")
        if os.path.isdir(given) and path.exists() and \
                pathlib.Path(given).resolve() in path.resolve().parents:
            raise MentorError(f"{flag} {path} is a file of the input folder {given}: writing "
                              "it would destroy it. Give a file name outside that folder.")
    if path.exists() and path.suffix.lower() in _NOT_A_RESULT:
        raise MentorError(f"{flag} {path} exists and is a {path.suffix} file, not a result "
                          "mentor wrote: mentor will not overwrite it. Give another file name.")
    if path.is_file() and mine is not None and not mine(path):
        raise MentorError(f"{flag} {path} exists and is not a result of this command: mentor "
                          "will not overwrite it. Give another file name, or move it away.")
    run = owner_of(path)
    if run is not None:
        raise MentorError(f"{flag} {path} lies in {run}, a folder mentor writes itself; give "
                          "a file name outside it.")
    if not create:  # the writer makes its folders itself, and removes them if it fails
        return
    probe = path.with_name(f"{TEMP_PREFIX}{os.getpid()}-probe")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        # "File exists" or "Not a directory" would not say which part of the path is wrong
        found = next(p for p in path.parents if p.exists())  # "." exists, at least
        reason = f"{found} is a file, not a folder" if not found.is_dir() else e.strerror or e
        raise MentorError(f"cannot write {flag} {path} ({reason}). Give a path in a "
                          "writable folder.") from None


def _trained_on(inputs) -> list[str]:
    """The data files and folders the runs among `inputs` were trained on."""
    import tomllib

    from mentor.run_folders import input_paths

    found = []
    for spec in inputs:
        config = pathlib.Path(str(spec)) / "config.toml"
        if config.is_file():
            try:
                found += input_paths(tomllib.loads(config.read_text(encoding="utf-8")))
            except (ValueError, OSError):
                continue  # a damaged config: evaluate/predict say so themselves
    return found


PREDICTIONS_HEADER = "image,predicted,class_name,probability"


def _is_predictions(path) -> bool:
    """Whether an existing file is a CSV `mentor predict` wrote (its header)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(len(PREDICTIONS_HEADER)) == PREDICTIONS_HEADER
    except (OSError, UnicodeDecodeError):
        return False


def _is_evaluation(path) -> bool:
    """Whether an existing file is metrics `mentor evaluate --json` wrote."""
    try:
        metrics = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(metrics, dict) and "images" in metrics and \
        any(k.endswith("_acc") for k in metrics)


def _write_file_atomically(name, text: str, flag: str):
    """Write through a temporary file and rename: an interrupted write leaves no half a
    file, and no file of the user's is touched on the way."""
    from mentor.atomic import write_atomically

    path = pathlib.Path(name)
    try:
        write_atomically(path, text)
    except OSError as e:
        raise MentorError(f"cannot write {flag} {path} ({e.strerror or e}). Free some space "
                          "or give a path in a writable folder, and run again.") from None


def _robustness(args):
    from mentor.corruptions import BENCHMARK_CORRUPTIONS, CORRUPTIONS
    from mentor.evaluate import evaluate_file

    names = _csv(args.corruptions)
    severities = _severities(args.severities)
    _usage(_check_corruptions, names, severities)
    metrics, out = evaluate_file(
        args.model, args.data, cifar10c=args.cifar10c, out=args.out, corruptions=names,
        severities=severities, max_images=args.max_images, seed=args.seed, unsafe=args.unsafe)
    bench = [c for c in names or CORRUPTIONS if c in BENCHMARK_CORRUPTIONS]
    print(f"clean accuracy      {metrics['clean_acc']:.4f}")
    if "corrupt_acc" in metrics:
        print(f"corrupt accuracy    {metrics['corrupt_acc']:.4f}  "
              f"({len(bench)} corruptions × {len(severities)} severities)")
    print(f"all corruptions     {metrics['corrupt_acc_all']:.4f}")
    if "teacher_clean_acc" in metrics:
        print(f"teacher: clean {metrics['teacher_clean_acc']:.4f}, all corruptions "
              f"{metrics['teacher_corrupt_acc_all']:.4f}")
    print(f"run directory: {out} (report.html, robustness.png, metrics.json)")
    return 0


def _check_corruptions(names, severities):
    from mentor.corruptions import check

    check(names, severities)


def _usage(check, *args):
    """Run a library check on command-line values: its refusal is a usage error (exit 2)."""
    try:
        return check(*args)
    except UsageError:
        raise
    except MentorError as e:
        raise UsageError(str(e)) from None


def _predict(args):
    from mentor.evaluate import model_and_run
    from mentor.models import load_model
    from mentor.predict import predict_images

    _check_output_file(args.out, "--out", [args.model, *args.images],
                       mine=_is_predictions)
    model_file, run = model_and_run(args.model)
    model = load_model(model_file, safe_mode=not args.unsafe)
    text, summary = predict_images(model, args.images, batch_size=args.batch_size, run=run)
    _write_file_atomically(args.out, text, "--out")
    line = f"{summary['images']} images → {args.out}"
    if "accuracy" in summary:
        line += f" (accuracy {summary['accuracy']:.4f} against the source's labels)"
    print(line)
    return 0


def _export(args):
    import keras

    from mentor.evaluate import model_and_run
    from mentor.export import check_exportable, export_model
    from mentor.models import load_model

    check_exportable(args.format, keras.backend.backend(), args.out)
    model_file, _ = model_and_run(args.model)
    # check_exportable refused an --out that exists; this refuses one inside a run folder
    _check_output_file(args.out, "--out", [args.model, model_file], create=False)
    model = load_model(model_file, safe_mode=not args.unsafe)
    difference = export_model(model, args.format, args.out)
    check = ("not checked: no runtime for it is installed" if difference != difference
             else f"its logits within {difference:.1e} of the Keras model's on 8 images")
    print(f"{model_file} → {args.out} ({args.format}; {check})")
    return 0


def _config_show(args):
    from mentor.config import dumps, to_dict
    from mentor.recipes import load_config

    config, name = load_config(args.config, args.set)
    print(f"# mentor config show {args.config}: every key, defaults included; edit and run "
          "with `mentor train FILE`\n")
    print(dumps(to_dict(config)), end="")
    return 0


def _version_line() -> str:
    import importlib.metadata

    import keras

    try:
        version = importlib.metadata.version("mentor")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        version = mentor.__version__
    return f"mentor {version} (Keras {keras.__version__}, backend {keras.backend.backend()})"


def _csv(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def _severities(text) -> list:
    """--severities: comma-separated whole numbers, each one of CIFAR-10-C's levels 1-5."""
    levels = _csv(text)
    for level in levels:
        if not (level.isdigit() and 1 <= int(level) <= 5):
            raise UsageError(f"--severities takes CIFAR-10-C's levels 1 to 5, comma-separated, "
                              f"got {level!r}; write e.g. --severities 1,3,5.")
    if not levels:
        raise UsageError(f"--severities names no level (got {text!r}); write e.g. "
                          "--severities 1,3,5, or leave it out for all five.")
    return [int(level) for level in levels]


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ {low}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1 (a batch of 0 images, or of -3, means nothing)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number ≥ 0 (where 0 means "all", as in --max-images 0)."""
    return _int_at_least(text, 0)


def _status(args):
    """One line per run directory (a demo's parts included): how it stands."""
    from mentor.run_folders import read_status

    worst = 0
    for root in args.runs:
        root = pathlib.Path(root)
        if not root.is_dir():
            raise MentorError(f"{root} is not a directory; give a run directory (--out of a run).")
        runs = {root: read_status(root)}
        if not runs[root]:  # a folder of runs, such as a demo's
            runs = {p: read_status(p) for p in sorted(root.iterdir()) if p.is_dir()}
            runs = {p: s for p, s in runs.items() if s}
        if not runs:
            raise MentorError(f"{root} holds no mentor run (mentor marks each run folder it "
                              "writes with .mentor-run.json); give a run directory (--out of a "
                              "run) or a demo's folder.")
        for path, s in runs.items():
            state = s.get("state", "unknown")
            where = f", {s['stage']} epoch {s['epoch']}/{s['epochs']}" if "epoch" in s else ""
            line = f"{path!s:<40} {state}{where}"
            if state == "running":
                line += f" (pid {s.get('pid')} on {s.get('host')}, since {s.get('started')})"
            elif state == "interrupted":
                line += " — run the same command with the same --out to resume"
            elif state == "failed":
                line += f": {s.get('message', '')}"
            print(line)
            worst = max(worst, 0 if state in ("completed", "running") else 1)
    return worst


def _presets(args):
    from mentor.config import list_presets

    for name, description in list_presets():
        print(f"{name:<24} {description}")
    return 0


def _sources(args):
    from mentor.data.spec import SOURCES_HELP

    print(SOURCES_HELP)
    return 0


def _demo(args):
    from mentor.demo import check_parts, run_demo

    check_parts(args.parts)
    from mentor.models import unsafe_loading

    _join_processes(args)
    with unsafe_loading(args.unsafe):
        run_demo(args.parts, list(args.set) + _runtime_overrides(args), args.out,
                 resume_anyway=args.resume_anyway)
    return 0


class _Version(argparse.Action):
    """--version, its line made only when asked: naming Keras's version imports Keras,
    which other commands' argument errors should not wait for."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version_line())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mentor",
        description="Train better image classifiers from a teacher, from unlabeled or from "
                    "shifted data (Keras 3; torch, JAX or TensorFlow).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_Version,
                        help="print mentor's version, Keras's and the backend, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train from a preset or a TOML config",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=textwrap.dedent("""\
        Train with a recipe. CONFIG is a preset name (see `mentor presets`) or a path to a
        TOML file whose `recipe` key names the recipe; every other key is checked, so a typo
        is an error. The run directory gets config.toml, history.csv, checkpoints/, the
        model as .keras, report.html and, once the run completes, metrics.json."""),
                       epilog="example: mentor train demo --set train.epochs=5 "
                              "--set data.train=embedded:digits --out runs/digits")
    p.add_argument("config", metavar="CONFIG", help="preset name or path to a .toml file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. train.learning_rate=0.01 (repeatable)")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/NAME-TIMESTAMP)")
    _add_runtime_flags(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("config", help="show a preset or config file resolved: every key")
    config_sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    p = config_sub.add_parser(
        "show", help="print the resolved config as TOML, defaults included",
        description="Print the full resolved config (every key, defaults included) as TOML: "
                    "the text a run writes as config.toml. Save it, edit it, and run it with "
                    "`mentor train FILE`.",
        epilog="example: mentor config show demo --set train.epochs=5 > my.toml")
    p.add_argument("config", metavar="CONFIG", help="preset name or path to a .toml file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    p.set_defaults(func=_config_show)

    p = sub.add_parser("evaluate", help="accuracy of a saved .keras model on a data source")
    p.add_argument("model", metavar="MODEL",
                   help="path to a .keras file, or a finished run directory: its trained "
                        "model (with a consistency run's teacher; a distill run's teacher, "
                        "student and labels-only student side by side)")
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help="data source, e.g. test.npz, folder:imgs/, cifar10:test (`mentor sources`)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--json", metavar="FILE", help="also write the metrics to FILE")
    p.add_argument("--unsafe", action="store_true",
                   help="allow models that run arbitrary code on load (Lambda layers); only "
                        "for files you trust")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "robustness", help="accuracy under the 19 CIFAR-10-C corruptions × 5 severities",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
        The CIFAR-10-C protocol for any model and data: clean accuracy, then accuracy on each
        corruption at each severity, generated on the fly with the CIFAR parameters (or read
        from the official release with --cifar10c). corrupt_acc is the mean over the 15
        benchmark corruptions × 5 severities (what RobustBench reports)."""),
        epilog="example: mentor robustness runs/x/model.keras --data cifar10:test "
               "--max-images 2000")
    p.add_argument("model", metavar="MODEL",
                   help="path to a .keras file, or a finished run directory: its trained "
                        "model (and the teacher of a consistency or distill run)")
    p.add_argument("--data", required=True, metavar="SOURCE", help="clean test data")
    p.add_argument("--cifar10c", metavar="DIR",
                   help="the extracted CIFAR-10-C release: evaluate on its images instead")
    p.add_argument("--corruptions", metavar="A,B", help="a subset, comma-separated (default all 19)")
    p.add_argument("--severities", default="1,2,3,4,5", metavar="1,2,…")
    p.add_argument("--max-images", type=non_negative_int, default=0,
                   help="a seeded subset of the test images, for speed (default all)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the corruptions' randomness")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/robustness-TIMESTAMP)")
    p.add_argument("--unsafe", action="store_true", help="allow Lambda layers (trusted files only)")
    p.set_defaults(func=_robustness)

    p = sub.add_parser(
        "predict", help="the class of each image, as CSV",
        description="Predict each image's class with a trained model. Writes CSV rows: image "
                    "(file, or index in the source), predicted (class id), class_name, "
                    "probability (softmax of the logits) and, where the source has labels, "
                    "label. Images are resized and converted to the model's input as in "
                    "training.",
        epilog="example: mentor predict runs/mine photos/ --out preds.csv")
    p.add_argument("model", metavar="MODEL",
                   help="a .keras file, or a finished run directory (its trained model)")
    p.add_argument("images", nargs="+", metavar="IMAGES",
                   help="image files, a folder of images, or one data source "
                        "(`mentor sources`: PATH.npz, folder:DIR, embedded:…)")
    p.add_argument("--out", default="predictions.csv", metavar="FILE",
                   help="the CSV file (default predictions.csv)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--unsafe", action="store_true", help="allow Lambda layers (trusted files only)")
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "export", help="a trained model as a TensorFlow SavedModel, ONNX or TFLite",
        description="Export with Keras's Model.export, then run the artefact on a few images "
                    "and compare its logits with the Keras model's (where its runtime is "
                    "installed). SavedModel and TFLite need tensorflow (on the torch "
                    "backend also torch_xla, resp. litert-torch), ONNX needs onnx and "
                    "onnxscript (torch) or tf2onnx (tensorflow); KERAS_BACKEND=tensorflow "
                    "exports any .keras file.",
        epilog="example: KERAS_BACKEND=tensorflow mentor export runs/mine --format tflite "
               "--out mine.tflite")
    p.add_argument("model", metavar="MODEL",
                   help="a .keras file, or a finished run directory (its trained model)")
    p.add_argument("--format", required=True, choices=("saved_model", "onnx", "tflite"))
    p.add_argument("--out", required=True, metavar="PATH",
                   help="where to write: a folder (saved_model) or a file (.onnx, .tflite)")
    p.add_argument("--unsafe", action="store_true", help="allow Lambda layers (trusted files only)")
    p.set_defaults(func=_export)

    p = sub.add_parser("status", help="whether runs completed, are running, failed or were "
                                      "interrupted (and where they are)",
                       description="Reads each run directory's status.json (a demo's parts "
                                   "too). Exit code 0 when every run is completed or running, "
                                   "1 otherwise.")
    p.add_argument("runs", nargs="+", metavar="DIR", help="run directories")
    p.set_defaults(func=_status)

    p = sub.add_parser("presets", help="list the shipped presets, one line each")
    p.set_defaults(func=_presets)

    p = sub.add_parser("sources", help="how to name data: files, folders, downloads, embedded")
    p.set_defaults(func=_sources)

    p = sub.add_parser("demo", help="the end-to-end demo on embedded data (no network)",
                       description="Runs the demo part of each recipe that has one, on data "
                                   "shipped with mentor, each into its own folder of the run "
                                   "directory, then compares them on one page (index.html). "
                                   "Each part's preset is demo-RECIPE (the supervised one's: "
                                   "demo); `mentor presets` describes them.")
    p.add_argument("parts", nargs="*", metavar="PART",
                   help="parts to run, by recipe name, e.g. supervised distill (default: all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key in every part's preset")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/demo-TIMESTAMP)")
    _add_runtime_flags(p)
    p.set_defaults(func=_demo)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, `kill`, a container's shutdown), raised where the run
    is, so that it ends as Ctrl-C ends it: status "interrupted", temporary files removed,
    the newest checkpoint kept for a resume."""


def _on_sigterm(signum, frame):
    import signal

    if os.getpid() != _MAIN_PID:  # a worker process forked from this one: just go
        os._exit(128 + signum)
    # A second SIGTERM (schedulers repeat theirs) must not cut the clean-up short: the
    # status, the temporary files. Ignored from here to the exit.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


_MAIN_PID = os.getpid()


def main(argv=None) -> int:
    import signal
    import threading

    global _MAIN_PID
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)  # only the main thread may set signal handlers
    _MAIN_PID = os.getpid()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(argv)
    finally:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:  # not after a SIGTERM (above)
            signal.signal(signal.SIGTERM, previous)


def _main(argv=None) -> int:
    try:
        check_backend()  # before anything imports Keras, whose own error is a traceback
        parser = build_parser()
        args = parser.parse_args(argv)
        for flag in ("out", "json"):
            value = getattr(args, flag, None)
            if value is not None and not str(value).strip():
                raise UsageError(f"--{flag} is empty; give a path (or leave --{flag} out).")
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    except MentorError as e:
        print(f"mentor: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        # A path the user gave (or MENTOR_CACHE, KERAS_HOME) that is not what it must be:
        # the system's own words name the file; no code of mentor's is at fault.
        where = f" {e.filename}" if e.filename else ""
        print(f"mentor: error:{where}: {e.strerror or e}. Check that path (a folder where a "
              "folder belongs, a file where a file does) and its permissions.", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`mentor presets | head -1`): what it wanted it has. Point
        # stdout at nothing so that Python's own flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Terminated:
        print("mentor: terminated (SIGTERM); run the same command to resume", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("mentor: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
