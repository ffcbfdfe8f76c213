from pathlib import Path

import lightning as L
import pytest
import torch
from timm.layers import DropPath
from torch.utils.data import DataLoader

from hyctas_lightning.checkpoints import SEGMENTATION_KIND, CheckpointError
from hyctas_lightning.data import SyntheticStreetDataModule, SyntheticStreets
from hyctas_lightning.evaluation import mean_iou, per_class_iou
from hyctas_lightning.models import ChildNet, create_network, load_architecture, load_network
from hyctas_lightning.training import PolyWarmup, SegmentationModule
from hyctas_lightning.training.schedules import scheduled_drop_path

ROOT = Path(__file__).resolve().parents[1]
S = "hyctas_s"


def trainer(**kwargs) -> L.Trainer:
    options = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False)
    return L.Trainer(**{**options, **kwargs})


def fixed_batch(n: int, size=(128, 256)) -> dict:
    scenes = SyntheticStreets(n, size=size)
    items = [scenes[i] for i in range(n)]
    return {"image": torch.stack([i["image"] for i in items]), "mask": torch.stack([i["mask"] for i in items])}


def test_childnet_overfits_a_tiny_batch_to_near_perfect_miou():
    L.seed_everything(0)
    batch = fixed_batch(4)
    module = SegmentationModule(S, num_classes=8, fch=4, output_stride=4, lr=0.1, weight_decay=0.0, warmup_iters=10,
                                drop_path_rate=0.0)
    steps = 160
    trainer(max_steps=steps).fit(module, DataLoader([batch] * steps, batch_size=None))
    metric = per_class_iou(8)
    with torch.no_grad():
        metric.update(module.eval()(batch["image"]).argmax(1), batch["mask"])
    assert mean_iou(metric.compute()) > 0.9


def test_poly_schedule_warms_up_then_decays_to_zero():
    f = PolyWarmup(max_iters=1000, warmup_iters=100, power=0.9, warmup_factor=1e-3)
    assert f(0) == pytest.approx(1e-3)
    ramp = [f(t) for t in range(0, 101, 10)]
    assert all(a < b for a, b in zip(ramp, ramp[1:]))
    assert f(100) == pytest.approx(0.9 ** 0.9)
    decay = [f(t) for t in range(100, 1001, 100)]
    assert all(a > b for a, b in zip(decay, decay[1:])) and f(1000) == 0.0
    assert PolyWarmup(10)(0) == 1.0
    with pytest.raises(ValueError, match="warmup_iters"):
        PolyWarmup(10, warmup_iters=10)


def test_drop_path_sits_on_residual_cells_and_is_identity_in_eval():
    net = ChildNet(load_architecture(S), num_classes=8, fch=4)
    sites = [m for m in net.modules() if isinstance(m, DropPath)]
    # HyCTAS-S: 11 cells, of which the down-sampling light_conv and the two plain convs have no bypass, and the
    # light_conv_2x block of its attention classifier
    assert len(sites) == 9
    x = torch.randn(2, 3, 64, 128)
    reference = net.eval()(x)
    for m in sites:
        m.drop_prob = 0.5
    torch.testing.assert_close(net(x), reference)
    net.train()
    assert not torch.allclose(net(x), net(x))
    assert scheduled_drop_path(0.2, 0, 100) == 0.0 and scheduled_drop_path(0.2, 50, 100) == pytest.approx(0.1)
    assert scheduled_drop_path(0.2, 150, 100) == pytest.approx(0.2)


def test_recipe_runs_end_to_end_with_aux_heads_schedules_and_checkpoint(tmp_path):
    L.seed_everything(0)
    data = SyntheticStreetDataModule(train_samples=8, val_samples=2, test_samples=2, size=(64, 128), batch_size=4)
    module = SegmentationModule(S, num_classes=8, fch=4, warmup_iters=2, drop_path_rate=0.2)
    # HyCTAS-S's one branch: its last stride-16 feature (layer 2, before it goes down) and its final feature
    assert module.net.aux_features == {"cells.L2_B0": round(16 * 4 * 0.6667), "cells.L10_B0": 32 * 4}
    assert module.hparams.aux_weight == 0.2
    aux_before = [p.detach().clone() for p in module.aux_heads.parameters()]
    t = trainer(max_steps=4, default_root_dir=tmp_path, log_every_n_steps=1, gradient_clip_val=1.0)
    t.fit(module, data)
    logged = t.callback_metrics
    assert logged["train/drop_path"] == pytest.approx(0.2 * 3 / 4)
    assert {"train/loss_main", "train/loss_aux_cells_L2_B0", "train/loss_aux_cells_L10_B0", "val/mIoU"} <= set(logged)
    assert all(not torch.equal(a, p) for a, p in zip(aux_before, module.aux_heads.parameters()))  # trained
    assert t.lr_scheduler_configs[0].interval == "step"
    assert t.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0)  # poly reaches 0 at the last step

    path = tmp_path / "retrain.ckpt"
    t.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyctas"]["kind"] == SEGMENTATION_KIND
    assert checkpoint["hyctas"]["classes"][0] == "road"
    net, meta = load_network(path)
    assert not any("aux" in k for k in net.state_dict())
    x = torch.randn(1, 3, 64, 128)
    torch.testing.assert_close(net(x), module.eval().net(x))
    assert meta["name"] == "hyctas_s" and meta["network"]["fch"] == 4
    reloaded = SegmentationModule.load_from_checkpoint(path)  # the architecture travels in the checkpoint
    torch.testing.assert_close(reloaded.eval()(x), net(x))


def test_torchvision_baseline_trains_under_the_same_recipe():
    data = SyntheticStreetDataModule(train_samples=4, val_samples=2, size=(64, 128), batch_size=2)
    module = SegmentationModule(network="lraspp_mobilenet_v3_large", num_classes=8, warmup_iters=0)
    assert module.aux_sources == {"model.backbone.4": "model_backbone_4"}
    assert module.net(torch.randn(2, 3, 70, 90)).shape == (2, 8, 70, 90)
    aux_before = [p.detach().clone() for p in module.aux_heads.parameters()]
    with pytest.warns(UserWarning, match="drop_path_rate=0.2 has no effect"):
        trainer(max_steps=2, limit_val_batches=1).fit(module, data)
    assert all(not torch.equal(a, p) for a, p in zip(aux_before, module.aux_heads.parameters()))


PLUGIN = """
from torch import nn
from hyctas_lightning.models import register_network


@register_network("plugin_tiny_fcn")
def tiny(num_classes):
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, num_classes, 1))
    net.aux_features = {"1": 8}
    return net
"""


def test_plugin_network_from_a_users_module_trains_and_reloads(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = SegmentationModule(network="plugin_tiny_fcn", num_classes=3, plugins=["my_nets"], drop_path_rate=0.0)
    assert set(module.aux_heads) == {"1"}
    t = trainer(max_steps=1, default_root_dir=tmp_path)
    t.fit(module, DataLoader([{"image": torch.randn(2, 3, 16, 16), "mask": torch.randint(0, 3, (2, 16, 16))}],
                             batch_size=None))
    t.save_checkpoint(tmp_path / "plugin.ckpt")
    net, meta = load_network(tmp_path / "plugin.ckpt")
    assert meta["network"]["plugins"] == ["my_nets"] and meta["name"] == "plugin_tiny_fcn"
    with pytest.raises(ValueError, match="plugins: cannot import 'not_a_module'"):
        SegmentationModule(network="plugin_tiny_fcn", plugins=["not_a_module"])


def test_bad_network_choices_are_reported_clearly(tmp_path):
    with pytest.raises(ValueError, match="exactly one of `arch`"):
        SegmentationModule(num_classes=8)
    with pytest.raises(ValueError, match="exactly one of `arch`"):
        SegmentationModule(S, network="lraspp_mobilenet_v3_large")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        SegmentationModule(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="does not take \\['fch'\\]"):
        create_network("lraspp_mobilenet_v3_large", fch=8)
    with pytest.raises(ValueError, match="unknown network 'nope'; registered: .*lraspp"):
        SegmentationModule(network="nope")
    with pytest.raises(ValueError, match="test scales"):
        SegmentationModule(S, test_scales=[0.0])


def test_wrong_checkpoints_and_class_counts_are_rejected(tmp_path):
    supernet = tmp_path / "supernet.ckpt"
    torch.save({"hyctas": {"kind": "hyctas-supernet"}, "state_dict": {}}, supernet)
    with pytest.raises(ValueError, match="supernet.ckpt is a supernet .*, not a retrained network"):
        load_network(supernet)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match="other.ckpt is not a hyctas checkpoint"):
        load_network(other)
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nope.ckpt"):
        load_network(tmp_path / "nope.ckpt")
    data = SyntheticStreetDataModule(train_samples=2, val_samples=2, size=(64, 128), batch_size=2)
    with pytest.raises(ValueError, match="num_classes is 19 but the data has 8 classes"):
        trainer(max_steps=1).fit(SegmentationModule(S, fch=4), data)


def test_checkpoints_from_before_selectable_heads_load_with_the_plain_head(tmp_path):
    """The model zoo's checkpoints store architectures without "head": they hold the plain head and linear
    classifier, and a module built with another head refuses them with the fix."""
    zoo = ROOT / "model_zoo/camvid"
    net, meta = load_network(zoo / "searched_camvid.ckpt")
    assert (net.arch.head, net.arch.classifier) == ("plain", "linear") and meta["network"]["arch"]["head"] == "plain"
    assert net(torch.randn(1, 3, 64, 96)).shape == (1, 11, 64, 96)
    module = SegmentationModule(str(zoo / "searched_camvid.json"), num_classes=11)
    module.on_load_checkpoint(torch.load(zoo / "searched_camvid.ckpt", map_location="cpu", weights_only=False))
    progressive = SegmentationModule(str(zoo / "searched_camvid.json"), num_classes=11, head="progressive")
    with pytest.raises(ValueError, match="has head 'plain' and classifier 'linear', this module builds "
                                         "'progressive' and 'linear': set model.init_args.head"):
        progressive.on_load_checkpoint(torch.load(zoo / "searched_camvid.ckpt", map_location="cpu",
                                                  weights_only=False))
