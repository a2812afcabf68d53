"""Data-parallel plumbing for `torchrun --nproc-per-node N trainplug sft ...` (NCCL on GPUs, gloo
on CPU). A single process needs none of it: every helper is a no-op when the world is one."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def init() -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if size > 1 and not tdist.is_initialized():
        tdist.init_process_group("nccl" if cuda else "gloo")
    return World(int(os.environ.get("RANK", "0")), size, local, device)


def all_sum(world: World, values: list[float]) -> list[float]:
    if world.size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=world.device)
    tdist.all_reduce(t)
    return t.tolist()


def gather(world: World, obj) -> list:
    if world.size == 1:
        return [obj]
    out = [None] * world.size
    tdist.all_gather_object(out, obj)
    return out


def barrier(world: World) -> None:
    if world.size > 1:
        tdist.barrier()


def close(world: World) -> None:
    if world.size > 1 and tdist.is_initialized():
        tdist.destroy_process_group()
