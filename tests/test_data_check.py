"""``hyctas data check`` and ``check_data``: counts, the class histogram, and every problem, from YAML or flags."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import fixtures_data as fx
from hyctas_lightning.cli import main
from hyctas_lightning.data import CamVidDataModule, CityscapesDataModule, SyntheticStreetDataModule, check_data

ROOT = Path(__file__).resolve().parents[1]


def histogram(masks, num_classes: int) -> np.ndarray:
    return sum(np.bincount(m.ravel(), minlength=256)[:num_classes] for m in masks)


def test_clean_copy_counts_and_histogram(tmp_path: Path) -> None:
    expected = fx.cityscapes(tmp_path)
    report = check_data(CityscapesDataModule(root=str(tmp_path)))
    assert report.ok and report.problems == [] and report.absent == ["test"]
    assert {name: s.samples for name, s in report.splits.items()} == {"train": 2, "val": 1}
    train = [expected["aachen_000000_000019"], expected["bochum_000000_000313"]]
    np.testing.assert_array_equal(report.splits["train"].pixels, histogram(train, 19))
    assert report.splits["train"].ignored == sum(int((m == 255).sum()) for m in train)
    assert report.splits["train"].shares.sum() == pytest.approx(1.0)
    text = report.format()
    assert "absent (optional)" in text and "0 problem(s)" in text
    assert "  0  road" in text and " 13  car" in text and " 18  bicycle" in text


def test_every_problem_is_listed(tmp_path: Path) -> None:
    fx.camvid(tmp_path)
    (tmp_path / "trainannot" / "0001TP_006690.png").unlink()
    fx.write_image(tmp_path / "trainannot" / "0001TP_006720.png", np.full((3, 5), 11, np.uint8))
    fx.write_image(tmp_path / "valannot" / "0016E5_07959.png", np.zeros((4, 5), np.uint8))
    report = check_data(CamVidDataModule(root=str(tmp_path)))
    assert not report.ok and len(report.problems) == 3
    assert report.splits["train"].bad == 2 and report.splits["val"].bad == 1
    missing, values, size = report.problems
    assert missing.startswith("train: label missing for image") and "0001TP_006690" in missing
    assert values.startswith(f"train: label {tmp_path / 'trainannot' / '0001TP_006720.png'} has values [11]")
    assert size.startswith("val: size mismatch") and "is 5x3 but its label" in size


def test_missing_required_split_is_a_problem_and_the_rest_is_still_scanned(tmp_path: Path) -> None:
    fx.cityscapes(tmp_path)
    shutil.rmtree(tmp_path / "leftImg8bit" / "val")
    report = check_data(CityscapesDataModule(root=str(tmp_path)))
    assert len(report.problems) == 1 and report.problems[0].startswith("val: Cityscapes val images not found")
    assert report.splits["train"].samples == 2


def test_synthetic_data_has_the_same_check() -> None:
    report = check_data(SyntheticStreetDataModule(size=(32, 64), max_samples=3))
    assert report.ok and list(report.splits) == ["train", "val", "test"]
    assert all(s.samples == 3 and s.pixels.sum() == 3 * 32 * 64 for s in report.splits.values())


def write_config(path: Path, data: dict, **extra) -> Path:
    path.write_text(yaml.safe_dump({**extra, "data": data}))
    return path


def test_cli_reads_the_data_section_of_a_config(tmp_path: Path, capsys) -> None:
    fx.camvid(tmp_path / "camvid")
    data = {"class_path": "hyctas_lightning.data.CamVidDataModule", "init_args": {"root": str(tmp_path / "camvid")}}
    # a full training config: the other sections are not this tool's business
    config = write_config(tmp_path / "run.yaml", data, trainer={"max_epochs": 1}, model={"class_path": "x.Y"})
    assert main(["data", "check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "dataset: CamVidDataModule" in out and "train" in out and "  3  road" in out and "0 problem(s)" in out
    (tmp_path / "camvid" / "valannot" / "0016E5_07959.png").unlink()
    assert main(["data", "check", f"--config={config}"]) == 1
    assert "1 problem(s):\n  - val: label missing for image" in capsys.readouterr().out


def test_cli_takes_flags_and_reports_usage_errors(tmp_path: Path, capsys) -> None:
    fx.ade20k(tmp_path)
    flags = ["--data.class_path", "hyctas_lightning.data.ADE20KDataModule", "--data.init_args.root"]
    assert main(["data", "check", *flags, str(tmp_path), "--num_workers", "0"]) == 0
    assert "149  flag" in capsys.readouterr().out
    assert main(["data", "check", *flags, str(tmp_path / "nowhere")]) == 5  # EXIT_DATASET
    assert "hyctas data check: error: dataset root not found" in capsys.readouterr().err
    assert main(["data", "inspect"]) == 2
    assert "usage: hyctas data check" in capsys.readouterr().err


@pytest.mark.parametrize("name, build", [("cityscapes", fx.cityscapes), ("ade20k", fx.ade20k),
                                         ("camvid", fx.camvid), ("coco_panoptic", fx.coco_panoptic)])
def test_shipped_configs_check_a_copy(tmp_path: Path, name: str, build, capsys) -> None:
    build(tmp_path)
    config = ROOT / "configs" / "data" / f"{name}.yaml"
    assert main(["data", "check", "--config", str(config), "--data.init_args.root", str(tmp_path),
                 "--num_workers", "0"]) == 0
    assert "0 problem(s)" in capsys.readouterr().out


def test_shipped_synthetic_config(capsys) -> None:
    config = ROOT / "configs" / "data" / "synthetic.yaml"
    assert main(["data", "check", "--config", str(config), "--data.init_args.max_samples", "2"]) == 0
    assert "vegetation" in capsys.readouterr().out


def test_config_without_data_section(tmp_path: Path, capsys) -> None:
    config = tmp_path / "trainer_only.yaml"
    config.write_text(json.dumps({"trainer": {"max_epochs": 1}}))
    assert main(["data", "check", "--config", str(config)]) == 2
    assert f"config {config} has no 'data:' section" in capsys.readouterr().err
