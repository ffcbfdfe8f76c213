"""``hyctas pipeline --config pipeline.yaml [--stages ...] [--run DIR]``: the whole method as one run, every stage
resuming from its files in the run folder (``manifest.json`` holds their state). Without ``--config``, the run
folder's manifest gives the config, so ``hyctas pipeline --run DIR --stages report`` regenerates a report from a
finished (or committed) run. Any field of the config can be overridden, e.g. ``--retrain.seeds [0,1,2]``."""
from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import List, Sequence

from jsonargparse import ArgumentParser, Namespace

EXIT_INTERRUPTED = 130


def add_arguments(parser: ArgumentParser) -> None:
    from hyctas_lightning.pipeline import STAGES, PipelineConfig

    parser.add_argument("--config", action="config", help="the pipeline YAML, e.g. configs/camvid/pipeline.yaml")
    parser.add_class_arguments(PipelineConfig, None)
    parser.add_argument("--stages", nargs="+", default=list(STAGES),
                        help=f"stages to run, in the pipeline's order whatever is given: {' '.join(STAGES)}")
    parser.add_argument("--force", nargs="+", default=[],
                        help="stages to rerun although finished (jobs that finished with unchanged inputs are reused)")


def prepare_argv(argv: Sequence[str]) -> List[str]:
    """Without ``--config``, start from the config recorded in ``RUN/manifest.json`` (``--run`` names RUN)."""
    argv = list(argv)
    if any(a in ("-h", "--help") or a == "--config" or a.startswith("--config=") for a in argv):
        return argv
    run = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--run"), None)
    run = run or next((a.split("=", 1)[1] for a in argv if a.startswith("--run=")), None)
    manifest = Path(run) / "manifest.json" if run else None
    if manifest is None or not manifest.is_file():
        raise ValueError("give --config PIPELINE.yaml, or --run DIR of a run that has a manifest.json")
    from hyctas_lightning.fileio import read_json

    recorded = read_json(manifest)
    if not isinstance(recorded, dict) or not isinstance(recorded.get("config"), dict):
        raise ValueError(f"{manifest}: records no pipeline config; give --config PIPELINE.yaml")
    return ["--config", json.dumps(recorded["config"]), *argv]


def invocation(args: Namespace) -> List[str]:
    """The command line as the manifest records it: the config file(s), run folder, stages and forced stages
    (other overrides are in the recorded config)."""
    from hyctas_lightning.pipeline import STAGES

    files = [str(c) for c in (args.get("config") or []) if c is not None and Path(str(c)).is_file()]
    return [*(a for f in files for a in ("--config", f)), "--run", str(args.run),
            *(["--stages", *args.stages] if list(args.stages) != list(STAGES) else []),
            *(["--force", *args.force] if args.force else [])]


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: Namespace) -> int:
    """Run the pipeline; refusals and failed stages reach ``hyctas``'s error handler (one line, their status)."""
    from hyctas_lightning.pipeline import PipelineConfig, run_pipeline

    sections = {name: args[name] for name in PipelineConfig.__dataclass_fields__}
    previous = signal.signal(signal.SIGTERM, _stop)  # `timeout`, a scheduler: stop and record it, as for Ctrl-C
    try:
        pipeline = run_pipeline(PipelineConfig.from_dict(sections), args.stages, args.force, argv=invocation(args))
    except KeyboardInterrupt:
        print(f"hyctas pipeline: stopped; rerun the same command to resume from {args.run}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    report = pipeline.folder / "REPORT.md"
    print(f"run folder: {pipeline.folder} (manifest.json, results.json{', REPORT.md' if report.exists() else ''})")
    return 0
