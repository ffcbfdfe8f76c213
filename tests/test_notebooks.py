"""Every notebook runs top to bottom in a real Jupyter kernel, pointed at fixtures through its ``parameters`` cell,
and what it computed is checked from its outputs: the tables it shows (``viz.Table`` carries its rows as JSON next to
the HTML) and the images it displays."""
from __future__ import annotations

import base64
import io
import json
import os
import re
from pathlib import Path
from typing import Dict, List

import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image
from scipy.stats import kendalltau

import hyctas_lightning
from fixtures_data import CAMVID_ROOT
from hyctas_lightning.evaluation.bench import CPU_VARIANTS, GPU_VARIANTS
from hyctas_lightning.models import preset_names
from hyctas_lightning.search.objectives import OBJECTIVES
from hyctas_lightning.viz.tables import MIME

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


class Executed:
    """A notebook after a kernel ran it: its cells with outputs."""

    def __init__(self, nb: nbformat.NotebookNode) -> None:
        self.nb = nb

    def outputs(self, tag: str | None = None) -> List[dict]:
        return [out for cell in self.nb.cells if cell.cell_type == "code"
                and (tag is None or tag in cell.metadata.get("tags", [])) for out in cell.get("outputs", [])]

    def tables(self) -> Dict[str, dict]:
        found = [out["data"][MIME] for out in self.outputs() if MIME in out.get("data", {})]
        return {t["title"]: t for t in found}

    def table(self, title_start: str) -> List[dict]:
        """The rows (as dicts) of the one table whose title starts with ``title_start``."""
        hits = [t for title, t in self.tables().items() if title.startswith(title_start)]
        assert len(hits) == 1, f"tables titled '{title_start}...': {list(self.tables())}"
        return [dict(zip(hits[0]["columns"], row)) for row in hits[0]["rows"]]

    def images(self, tag: str) -> List[Image.Image]:
        return [Image.open(io.BytesIO(base64.b64decode(out["data"]["image/png"])))
                for out in self.outputs(tag) if "image/png" in out.get("data", {})]

    def text(self) -> str:
        return "".join(out.get("text", "") for out in self.outputs() if out.get("output_type") == "stream")


def execute(name: str, monkeypatch: pytest.MonkeyPatch, **parameters) -> Executed:
    """Run ``notebooks/NAME.ipynb`` in a fresh kernel from the notebooks folder, with ``parameters`` injected after
    the cell tagged ``parameters`` (as papermill does). The kernel imports the package these tests import, and runs
    torch on one thread (on a few shared cores, more threads wait on each other far longer than they compute)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    source_root = str(Path(hyctas_lightning.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([source_root, *filter(None, [os.environ.get("PYTHONPATH")])]))
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: exactly one cell must be tagged 'parameters'"
    source = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return Executed(nb)


def dominates(a: dict, b: dict, objectives: List[str]) -> bool:
    """``a`` is at least as good as ``b`` on every objective and better on one (directions from the registry)."""
    better = [OBJECTIVES.get(o).direction * (a[o] - b[o]) for o in objectives]
    return all(d >= 0 for d in better) and any(d > 0 for d in better)


@pytest.fixture(scope="module")
def fixture_runs(tmp_path_factory) -> Path:
    """One folder for the notebooks' stand-in runs, so the tiny supernet is trained once for two notebooks."""
    return tmp_path_factory.mktemp("notebook_runs")


def test_every_notebook_has_a_test():
    assert {p.stem for p in NOTEBOOKS.glob("*.ipynb")} == {
        "inspect_architectures", "explore_search", "supernet_ranking", "predictions"}


@pytest.mark.slow
def test_inspect_architectures(monkeypatch):
    nb = execute("inspect_architectures", monkeypatch, SIZE=(512, 1024))
    presets = nb.table("presets at 512x1024")
    assert [r["preset"] for r in presets] == preset_names()
    for row in presets:
        assert row["params (M)"] > 0 and row["mult-adds (G)"] > 0 and 0 < row["head params (M)"] < row["params (M)"]
        if row["preset"] in ("hyctas_s", "hyctas_m", "hyctas_l"):
            assert row["paper params (M)"] is not None
    shares = nb.table("branch counts of 200 samples")
    assert sum(r["share"] for r in shares) == pytest.approx(1.0)
    assert len(nb.outputs()) >= 6


@pytest.mark.slow
def test_explore_search(fixture_runs, monkeypatch):
    nb = execute("explore_search", monkeypatch, RUN=str(fixture_runs / "absent"), FIXTURE=str(fixture_runs),
                 BENCH_RUNS=3)
    search = fixture_runs / "search"
    objectives = json.loads((search / "config.json").read_text())["search"]["objectives"]
    front = nb.table("Pareto front of")
    assert front and not any(dominates(a, b, objectives) for a in front for b in front)
    written = json.loads((search / "pareto.json").read_text())
    assert sorted(r["hash"] for r in front) == sorted(e["hash"] for e in written)
    history = nb.table("hypervolume by generation")
    assert [r["generation"] for r in history] == [0, 1, 2]
    hv = [r["hypervolume"] for r in history]
    assert hv[0] > 0 and all(b >= a for a, b in zip(hv, hv[1:]))
    profiled = nb.table("front profiled at")
    assert [r["hash"] for r in profiled] == [r["hash"] for r in front]
    assert all(r["params_m"] > 0 and r["macs_g"] > 0 for r in profiled)
    latency = nb.table("latency of the picks")
    variants = sorted({r["variant"] for r in latency})
    assert variants in (sorted(CPU_VARIANTS), sorted(GPU_VARIANTS))
    assert len(latency) == 2 * len(variants) and all(r["median_ms"] > 0 for r in latency)
    pick = json.loads((search / "pick.json").read_text())
    assert front[0]["hash"] in nb.text() and pick["branches"]


@pytest.mark.slow
def test_supernet_ranking(fixture_runs, monkeypatch):
    nb = execute("supernet_ranking", monkeypatch, SUPERNET=str(fixture_runs / "absent"),
                 STUDY=str(fixture_runs / "no_study"), FIXTURE=str(fixture_runs))
    tracked = nb.table("validation mIoU of the tracked sub-networks")
    assert {"largest", "smallest"} <= {r["sub-network"] for r in tracked}
    assert all(r["steps logged"] == 3 and 0 <= r["last val mIoU"] <= r["best val mIoU"] <= 1 for r in tracked)
    pairs = nb.table("supernet estimate vs retrained mIoU")
    for row in nb.table("Kendall tau per supernet"):
        group = [p for p in pairs if p["group"] == row["group"]]
        assert row["pairs"] == len(group) >= 3
        expected = kendalltau([p["estimate"] for p in group], [p["retrained"] for p in group])[0]
        assert -1 <= row["kendall_tau"] <= 1 and row["kendall_tau"] == pytest.approx(expected)
    assert "MADE-UP" in nb.text()


@pytest.mark.slow
@pytest.mark.parametrize("camvid", [False, True], ids=["synthetic", "camvid"])
def test_predictions(camvid, monkeypatch):
    if camvid and not (CAMVID_ROOT / "val.txt").is_file():
        pytest.skip(f"real CamVid copy not found at {CAMVID_ROOT.resolve()} (set HYCTAS_CAMVID_ROOT)")
    root = CAMVID_ROOT.resolve() if camvid else CAMVID_ROOT / "absent"
    nb = execute("predictions", monkeypatch, CAMVID=str(root), IMAGES=4, WORST=2)
    classes = nb.table("per-class IoU")
    assert len(classes) == 11 and all(r["IoU"] is None or 0 <= r["IoU"] <= 1 for r in classes)
    images = nb.table("images by mIoU")
    assert len(images) == 4
    assert [r["miou"] for r in images] == sorted(r["miou"] for r in images)
    overlays = nb.images("overlays")
    assert len(overlays) == 2
    for overlay, row in zip(overlays, images):  # full size: the image's own, not the padded one
        assert overlay.size == (row["width"], row["height"]) == (480, 360)
    present = [r["IoU"] for r in classes if r["IoU"] is not None]
    shown = float(re.search(r"mIoU over 4 images: ([\d.]+) %", nb.text()).group(1))
    assert shown == pytest.approx(100 * sum(present) / len(present), abs=0.01)
    if camvid:  # the model zoo's searched network: 60.06 mIoU over the whole split
        assert shown > 35
