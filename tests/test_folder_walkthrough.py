"""From a folder of your own images to a searched, retrained network: the chain on a generated folder in both mask
styles, the GPU configs of the walkthrough, and the README's "Your own data" commands run as written."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from hyctas_lightning.cli import main
from hyctas_lightning.data import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE
from hyctas_lightning.search import SearchConfig
from make_folder_dataset import write_folder_dataset

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "configs" / "folder" / "example"
RGB = ["--data.init_args.mask_dir", "masks_rgb/{split}", "--data.init_args.mask_format", "rgb",
       "--data.init_args.ignore_colours", "[[0, 0, 0]]"]


@pytest.mark.parametrize("style", ["index", "rgb"])
def test_chain_on_a_folder(tmp_path: Path, style: str, monkeypatch, capsys) -> None:
    """Supernet fit, a one-generation search and a retraining on a generated folder, through the CLI; the search
    and the retraining read the data as the supernet did (the checkpoint carries the mask style)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data, run = tmp_path / "data", tmp_path / "run"
    write_folder_dataset(data, {"train": 8, "val": 2}, size=(32, 64))
    masks = RGB if style == "rgb" else []
    common = ["--data.init_args.root", str(data), *masks, "--trainer.max_epochs", "1"]
    assert main(["fit", "--config", str(EXAMPLE / "supernet.yaml"), *common,
                 "--trainer.default_root_dir", str(run / "supernet")]) == 0
    ckpt = run / "supernet" / "checkpoints" / "last.ckpt"
    meta = torch.load(ckpt, weights_only=True)["hyctas"]
    assert meta["data"]["class_path"] == "folder" and meta["data"]["init_args"]["mask_format"] == style
    assert meta["data"]["classes"] == list(SYNTHETIC_CLASSES)

    assert main(["search", "--ckpt", str(ckpt), "--config", str(EXAMPLE / "search.yaml"), "--out", str(run / "search"),
                 "--search.population", "4", "--search.latency_size", "[32, 64]"]) == 0
    inputs = json.loads((run / "search" / "inputs.json").read_text())
    assert inputs["data"]["init_args"]["mask_format"] == style  # the search measured mIoU on the same masks
    assert len((run / "search" / "candidates.jsonl").read_text().splitlines()) >= 4
    best = run / "search" / "best.json"

    retrain = ["--config", str(EXAMPLE / "retrain.yaml"), *common, "--model.init_args.arch", str(best),
               "--trainer.default_root_dir", str(run / "retrain")]
    assert main(["fit", *retrain]) == 0
    last = run / "retrain" / "checkpoints" / "last.ckpt"
    network = torch.load(last, weights_only=True)["hyctas"]
    assert network["classes"] == list(SYNTHETIC_CLASSES)
    assert [tuple(c) for c in network["palette"]] == SYNTHETIC_PALETTE  # from the folder's classes.yaml
    capsys.readouterr()
    assert main(["test", *retrain, "--ckpt_path", str(last)]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "vegetation" in out


@pytest.mark.parametrize("stage", ["supernet", "retrain"])
def test_gpu_configs_of_the_walkthrough_parse(tmp_path: Path, stage: str, monkeypatch, capsys) -> None:
    """configs/folder/ is what a user runs on a GPU: every value must be one its classes accept."""
    monkeypatch.setattr(sys, "argv", ["hyctas"])
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", str(ROOT / "configs" / "folder" / f"{stage}.yaml"), "--data.init_args.root",
              str(tmp_path), "--print_config"])
    assert done.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["class_path"] == "hyctas_lightning.data.FolderDataModule"
    assert printed["data"]["init_args"]["root"] == str(tmp_path)


def test_gpu_search_config_of_the_walkthrough() -> None:
    config = yaml.safe_load((ROOT / "configs" / "folder" / "search.yaml").read_text())
    search = SearchConfig(**config["search"])  # validates every field
    assert search.latency_backend == "cuda" and config["device"] == "cuda"


def readme_walkthrough() -> str:
    """The bash block of the README's "Your own data" section that writes the example folder."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Your own data"):]
    section = section[:section.index("\n## ", 1)]
    blocks = section.split("```bash\n")[1:]
    return next(block.split("```", 1)[0] for block in blocks if "make_folder_dataset.py" in block)


@pytest.mark.slow
def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    """The README's commands, unchanged, in a copy of the repository's configs and example script: the example
    folder, data check in both mask styles, supernet, search, retraining, test and predict."""
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "configs", clone / "configs")
    (clone / "tests").mkdir()
    shutil.copy(ROOT / "tests" / "make_folder_dataset.py", clone / "tests")
    script = readme_walkthrough()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.stdout.count("0 problem(s)") == 2  # the index and the RGB masks
    run = clone / "runs" / "example"
    assert (run / "search" / "best.json").is_file() and (run / "retrain" / "checkpoints" / "last.ckpt").is_file()
    assert "mIoU" in done.stdout
    assert list((run / "retrain" / "predictions").rglob("*_overlay.png"))
