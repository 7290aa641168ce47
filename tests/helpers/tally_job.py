"""A tally over a small synthetic data set, run as a subprocess by tests/test_tally.py.

    python tests/helpers/tally_job.py RUN_DIR OUT.safetensors [--items N]
    UNITSCOPE_FAULT=tally.checkpoint.after=2:kill python tests/helpers/tally_job.py ...   # killed at its 2nd checkpoint
    torchrun --standalone --nproc_per_node 2 tests/helpers/tally_job.py RUN_DIR OUT.safetensors

Prints "batches N" (how many batches this process ran the body for) and writes the final
statistic to OUT (rank 0 only).
"""

from __future__ import annotations

import argparse
import os

import torch
from torch.utils.data import Dataset

from unitscope.stats import CombinedStat, Moments, Quantile, TopK, save_stat
from unitscope.tally import tally


class Synthetic(Dataset):
    """Item i: a [3, 4, 4] tensor drawn from a generator seeded with i."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(i))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("out")
    p.add_argument("--items", type=int, default=240)
    args = p.parse_args()
    if "WORLD_SIZE" in os.environ:
        torch.distributed.init_process_group("gloo")
    stat = CombinedStat(q=Quantile(resolution=64), top=TopK(5), m=Moments())
    ran = 0
    for index, x in tally(
        stat,
        Synthetic(args.items),
        batch_size=8,
        run_dir=args.run_dir,
        key={"job": "synthetic"},
        checkpoint_every=3,
        with_index=True,
        num_workers=1,
        progress=False,
    ):
        acts = torch.relu(x) * 2  # a stand-in model
        stat.q.add(acts)
        stat.top.add(acts, index)
        stat.m.add(acts)
        ran += 1
    print(f"batches {ran}", flush=True)
    if int(os.environ.get("RANK", "0")) == 0:
        save_stat(args.out, stat)
    if "WORLD_SIZE" in os.environ:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
