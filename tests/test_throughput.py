import lightning as L
import torch
from torch.utils.data import DataLoader

from hyctas_lightning.training.throughput import ImagesPerSecond


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.conv(batch["image"]), batch["mask"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(batches: int, batch_size: int) -> DataLoader:
    items = [{"image": torch.randn(3, 8, 8), "mask": torch.randint(0, 2, (8, 8))} for _ in range(batches * batch_size)]
    return DataLoader(items, batch_size=batch_size)


def test_counts_images_after_warmup_across_epochs(tmp_path, capsys):
    callback = ImagesPerSecond(warmup=3)
    trainer = L.Trainer(max_epochs=2, callbacks=[callback], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(Tiny(), loader(5, 4))
    assert callback.images == (2 * 5 - 3) * 4  # ten steps, the first three untimed
    assert callback.images_per_second > 0
    assert "train/images_per_s" in trainer.callback_metrics


def test_reports_nothing_when_training_is_shorter_than_warmup(tmp_path):
    callback = ImagesPerSecond(warmup=50)
    L.Trainer(max_epochs=1, callbacks=[callback], logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, default_root_dir=tmp_path).fit(Tiny(), loader(2, 4))
    assert callback.images_per_second is None
