"""MMEngine's "15 minutes" tutorial, ported to raytrainer by changing the imports only.

The model, metric and Runner call are written exactly as the MMEngine tutorial writes them
(a ``BaseModel`` subclass, a ``BaseMetric`` subclass, ``Runner(...)`` with an SGD
``optim_wrapper``); the data is scikit-learn's bundled digits instead of CIFAR-10 so it runs
offline in seconds.

    python examples/mmengine_tutorial.py --work-dir work_dirs/tutorial
    python examples/mmengine_tutorial.py --engine mmengine   # the same file on MMEngine
"""
import argparse
import importlib
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.optim import SGD
from torch.utils.data import DataLoader, TensorDataset


def make_classes(engine: str):
    """Define the tutorial's model and metric on top of ``engine`` (raytrainer or mmengine)."""
    BaseModel = importlib.import_module(f"{engine}.model").BaseModel
    BaseMetric = importlib.import_module(f"{engine}.evaluator").BaseMetric

    class MMDigitsNet(BaseModel):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

        def forward(self, imgs, labels, mode):
            x = self.net(imgs)
            if mode == "loss":
                return {"loss": F.cross_entropy(x, labels)}
            elif mode == "predict":
                return x, labels

    class Accuracy(BaseMetric):
        def process(self, data_batch, data_samples):
            score, gt = data_samples
            self.results.append({
                "batch_size": len(gt),
                "correct": (score.argmax(dim=1) == gt).sum().cpu(),
            })

        def compute_metrics(self, results):
            total_correct = sum(item["correct"] for item in results)
            total_size = sum(item["batch_size"] for item in results)
            return dict(accuracy=100 * total_correct / total_size)

    return MMDigitsNet, Accuracy


def digits_loaders():
    digits = load_digits()
    images = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    val, train = order[:360], order[360:]
    train_dataloader = DataLoader(batch_size=32, shuffle=True,
                                  dataset=TensorDataset(images[train], labels[train]))
    val_dataloader = DataLoader(batch_size=32, shuffle=False,
                                dataset=TensorDataset(images[val], labels[val]))
    return train_dataloader, val_dataloader


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default="./work_dirs/mmengine_tutorial")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--engine", default="raytrainer", choices=["raytrainer", "mmengine"])
    args = parser.parse_args(argv)
    if args.engine == "mmengine":
        try:
            importlib.import_module("mmengine.runner")
        except ImportError as exc:
            sys.exit(f"--engine mmengine needs MMEngine, which raytrainer does not depend on "
                     f"({exc}); install it with: pip install mmengine==0.10.7")

    Runner = importlib.import_module(f"{args.engine}.runner").Runner
    MMDigitsNet, Accuracy = make_classes(args.engine)
    train_dataloader, val_dataloader = digits_loaders()

    runner = Runner(
        model=MMDigitsNet(),
        work_dir=args.work_dir,
        train_dataloader=train_dataloader,
        optim_wrapper=dict(optimizer=dict(type=SGD, lr=0.05, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=args.epochs, val_interval=1),
        val_dataloader=val_dataloader,
        val_cfg=dict(),
        val_evaluator=dict(type=Accuracy),
    )
    runner.train()
    metrics = runner.val()
    print(f"val accuracy: {float(metrics['accuracy']):.2f}")
    return metrics


if __name__ == "__main__":
    main()
