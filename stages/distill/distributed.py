"""torchrun support in a handful of functions: process group, DDP or FSDP2, reductions.

Under `torchrun --nproc_per_node N` (WORLD_SIZE > 1) each process trains on its own shards;
gradients are averaged by DDP (or reduce-scattered by FSDP2) and the trainer scales each
rank's loss so the average equals the mean over every response token of the global batch.
"""
from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .errors import DistillConfigError

FSDP_PREFIX = "model."  # DistillStudent holds the HF model as .model


@dataclass
class DistEnv:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: str = "auto") -> DistEnv:
    """Read torchrun's environment; start the process group when there is more than one rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda" and not torch.cuda.is_available():
        raise DistillConfigError("--device cuda was asked for, but torch sees no CUDA device")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    where = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(where)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        owns = True
    return DistEnv(rank, world, local_rank, where, owns)


def teardown(env: DistEnv) -> None:
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module, env: DistEnv, fsdp: bool):
    """DDP, or FSDP2: each decoder layer sharded on its own, then the root (embeddings, head)."""
    if not env.distributed:
        return module
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for layer in module.decoder_layers():
            fully_shard(layer)
        fully_shard(module)
        return module
    return DistributedDataParallel(module, device_ids=[env.local_rank] if env.device.type == "cuda" else None)


def unwrap(module):
    return module.module if isinstance(module, DistributedDataParallel) else module


@contextmanager
def gradient_sync(module, enabled: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulated step."""
    if isinstance(module, DistributedDataParallel):
        with nullcontext() if enabled else module.no_sync():
            yield
        return
    if hasattr(module, "set_requires_gradient_sync"):  # FSDP2
        module.set_requires_gradient_sync(enabled)
    yield


def all_reduce_sum(env: DistEnv, tensor: torch.Tensor) -> torch.Tensor:
    """Sum a device tensor over ranks in place and return it. Nothing is read back: on a GPU
    the host goes on queueing work while the reduction runs."""
    if env.distributed:
        dist.all_reduce(tensor)
    return tensor


def sum_across(env: DistEnv, values: list[float]) -> list[float]:
    """Sum host numbers over ranks (a host sync): for setup and evaluation, not the step."""
    if not env.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=env.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def max_across(env: DistEnv, value: int) -> int:
    if not env.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=env.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def gather_objects(env: DistEnv, obj) -> list:
    if not env.distributed:
        return [obj]
    out = [None] * env.world
    dist.all_gather_object(out, obj)
    return out


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


# ---- full state dicts for checkpoints (collective under FSDP: every rank calls them) ----
def _fsdp_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def is_fsdp(module) -> bool:
    return hasattr(module, "set_requires_gradient_sync")


def model_state(module) -> dict:
    """The HF model's full state dict (on rank 0 under FSDP; empty on the others)."""
    if is_fsdp(module):
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state = get_model_state_dict(module, options=_fsdp_options())
        return {k[len(FSDP_PREFIX):]: v for k, v in state.items()}
    return unwrap(module).model.state_dict()


def optimizer_state(module, optimizer) -> dict:
    if is_fsdp(module):
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(module, optimizer, options=_fsdp_options())
    return optimizer.state_dict()


def load_optimizer_state(module, optimizer, state: dict) -> None:
    if is_fsdp(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(module, optimizer, state, options=StateDictOptions(full_state_dict=True))
        return
    optimizer.load_state_dict(state)
