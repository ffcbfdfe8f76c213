import json
import subprocess
import sys
from pathlib import Path

import pytest

from hyctas_lightning.cli import main

ROOT = Path(__file__).resolve().parents[1]
PRESETS = [f"hyctas_{n}" for n in "sml"]


def test_profile_prints_a_table_and_json(capsys):
    assert main(["profile", "--arch", *PRESETS, "--size", "256", "512"]) == 0
    out = capsys.readouterr().out
    assert "params (M)" in out and all(p in out for p in PRESETS)
    assert main(["profile", "--arch", PRESETS[0], "--size", "1024", "2048", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["size"] == [1024, 2048] and row["params_m"] > 0 and row["macs_g"] > 0


def test_profile_reports_bad_input_clearly(tmp_path, capsys):
    bad = tmp_path / "arch.json"
    bad.write_text('{"branches": [{"ops": ["conv"], "widths": [1], "downs": [0]}]}')
    assert main(["profile", "--arch", str(bad)]) == 6  # EXIT_ARCHITECTURE
    assert "arch.json: branches[0].nodes: missing" in capsys.readouterr().err


def test_show_prints_and_draws(tmp_path, capsys):
    out = tmp_path / "figs" / "l.png"
    assert main(["show", "--arch", PRESETS[2], "--out", str(out)]) == 0
    assert "3 branches" in capsys.readouterr().out
    assert out.stat().st_size > 10_000


def test_console_script_and_print_config(tmp_path):
    result = subprocess.run([sys.executable, "-m", "hyctas_lightning.cli", "fit", "--config",
                             str(ROOT / "configs/demo/retrain.yaml"), "--print_config"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "SegmentationModule" in result.stdout and "SyntheticStreetDataModule" in result.stdout


def test_fit_validate_predict_on_synthetic_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["--config", str(ROOT / "configs/demo/retrain.yaml"), f"--model.init_args.arch={PRESETS[0]}",
              "--data.init_args.train_samples=8", "--data.init_args.val_samples=4", "--data.init_args.test_samples=4",
              "--data.init_args.size=[64,128]", "--data.init_args.batch_size=4", "--trainer.logger=false",
              "--trainer.enable_progress_bar=false"]
    main(["fit", *common, "--trainer.max_epochs=1", "--trainer.default_root_dir=run"])
    ckpts = list(Path("run").rglob("*.ckpt"))
    assert ckpts
    main(["validate", *common, f"--ckpt_path={ckpts[0]}"])
    main(["test", *common, f"--ckpt_path={ckpts[0]}"])
    main(["predict", *common, f"--ckpt_path={ckpts[0]}"])


def test_unknown_subcommand_fails():
    with pytest.raises(SystemExit):
        main(["teleport"])
