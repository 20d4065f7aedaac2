"""Training throughput: earlyphase's device-resident loop vs a conventional pipeline, side by side.

The baseline is what most lottery-ticket code does (OpenLTH included): a torchvision-style
``Dataset`` whose ``__getitem__`` makes a PIL image and applies per-example transforms, batched
by a ``DataLoader``. Both train the same model from the same initialisation for the same number
of iterations, then evaluate once on the test set; the ratio is printed.

    python benchmarks/train_throughput.py                                  # LeNet-300-100, batch 60
    python benchmarks/train_throughput.py --model resnet20 --dataset cifar10 --batch-size 128
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from earlyphase.catalog import DATASETS
from earlyphase.data import TrainData, load_split
from earlyphase.models import build_model
from earlyphase.specs import DataSpec, ModelSpec, TrainingSpec
from earlyphase.training import evaluate, train, training_device


class PerExampleDataset(Dataset):
    """uint8 images served one at a time through PIL and torchvision transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images, self.labels, self.transform = images.numpy(), labels.tolist(), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = self.images[i]
        image = Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))
        return self.transform(image), self.labels[i]


def conventional(args, device, model, data: TrainData, spec: TrainingSpec) -> float:
    info = DATASETS[args.dataset]
    steps = [transforms.ToTensor(), transforms.Normalize(info.mean, info.std)]
    if data.augment:
        steps = [transforms.RandomCrop(info.shape[1], padding=4), transforms.RandomHorizontalFlip(), *steps]
    dataset = PerExampleDataset(*load_split(args.dataset, True, args.data_dir), transforms.Compose(steps))
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
    )
    optimizer = torch.optim.SGD(
        model.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
    )
    model.train()
    began, done = time.perf_counter(), 0
    while done < args.iterations:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == args.iterations:
                break
    evaluate(model, data)
    return time.perf_counter() - began


def earlyphase_loop(args, model, data: TrainData, spec: TrainingSpec) -> float:
    began = time.perf_counter()
    train(model, data, spec, end=args.iterations)  # evaluates once, at the end
    return time.perf_counter() - began


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lenet_300_100")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--batch-size", type=int, default=60)
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers of the baseline")
    p.add_argument("--data-dir")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    device = training_device()
    data_spec = DataSpec(args.dataset, batch_size=args.batch_size)
    spec = TrainingSpec(steps=f"{args.iterations}it", milestones=(), eval_every=f"{args.iterations}it")
    data = TrainData(data_spec, seed=0, device=device, data_dir=args.data_dir)
    info = data.info

    def fresh():
        return build_model(ModelSpec(args.model), info.num_classes, info.shape, seed=0).to(device)

    print(
        f"{args.model} on {args.dataset}, batch {args.batch_size}, {args.iterations} iterations, "
        f"{device}, {torch.get_num_threads()} threads, baseline workers {args.workers}"
    )
    earlyphase_loop(args, fresh(), data, spec.replace(steps="20it", eval_every="20it"))  # warm-up
    times = {"conventional": [], "earlyphase": []}
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
        times["conventional"].append(conventional(args, device, fresh(), data, spec))
        times["earlyphase"].append(earlyphase_loop(args, fresh(), data, spec))
    images = args.iterations * args.batch_size
    for name, runs in times.items():
        best = min(runs)
        per_iteration = 1000 * best / args.iterations
        print(f"{name:>13}: {best:7.2f} s  {per_iteration:7.2f} ms/it  {images / best:9.0f} img/s")
    print(f"speed-up: {min(times['conventional']) / min(times['earlyphase']):.1f}x")


if __name__ == "__main__":
    main()
