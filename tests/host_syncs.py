"""Count host syncs and collectives during training, by training step and by the code that asked.

A host sync is a tensor read back into Python: .item(), .tolist(), .cpu(), .numpy(), bool(),
float(), int(), operator.index(). On a GPU each one waits for every kernel queued before it;
on a CPU they cost nothing, so a CPU test checks their number, not their time. Collectives
are the torch.distributed calls the Python code makes (DDP's own gradient buckets run in C++
and are not counted).

Each event is charged to the innermost caller outside torch and the standard library, sorted
into a bucket: "loop" (the trainer and its helpers in stages/distill), "loader" (the data
stream: host-side numpy and CPU tensors before they reach the device), "loss"
(stages/distill/losses), "model" (transformers) or "other". Steps are counted by the
trainer's calls to BatchStream.next: step s runs from the first micro-batch it fetches to
the first one step s + 1 fetches, so its logging, evaluation and checkpoint belong to it;
step 0 is everything before (setup, the first evaluation).
"""
from __future__ import annotations

import sys
import sysconfig
from collections import Counter
from pathlib import Path

import torch
import torch.distributed as dist

TENSOR_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")
COLLECTIVES = ("all_reduce", "broadcast", "all_gather", "all_gather_object", "gather_object", "broadcast_object_list",
               "reduce_scatter", "barrier")
REPO = Path(__file__).resolve().parents[1]
_SKIP = (str(Path(torch.__file__).parent), sysconfig.get_paths()["stdlib"], __file__)
_BUCKETS = (("stages/distill/losses/", "loss"), ("stages/distill/data.py", "loader"),
            ("stages/distill/batching.py", "loader"), ("cache_schema/", "loader"), ("stages/distill/", "loop"),
            ("/transformers/", "model"))


class SyncCounter:
    """with SyncCounter(grad_accum) as counter: train(...); then counter.per_step("loop", "sync")."""

    def __init__(self, grad_accum: int):
        self.grad_accum = grad_accum
        self.fetches = 0
        self.events: list[tuple[int, str, str, str]] = []  # (step, "sync" | "collective", name, bucket)
        self._undo: list[tuple[object, str, object]] = []

    @property
    def step(self) -> int:
        return -(-self.fetches // self.grad_accum)

    def __enter__(self) -> "SyncCounter":
        from stages.distill.data import BatchStream

        for name in TENSOR_READS:
            self._wrap(torch.Tensor, name, "sync")
        for name in COLLECTIVES:
            self._wrap(dist, name, "collective")
        original_next = BatchStream.next

        def next_batch(stream, *args, **kwargs):
            self.fetches += 1
            return original_next(stream, *args, **kwargs)

        self._replace(BatchStream, "next", next_batch)
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, original in reversed(self._undo):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._undo.clear()

    def per_step(self, bucket: str, kind: str, name: str | None = None) -> Counter:
        """{step: number of events} of one bucket and kind (optionally one call name)."""
        return Counter(step for step, k, n, b in self.events if b == bucket and k == kind and name in (None, n))

    def table(self) -> dict:
        """{step: {"kind name bucket": count}}, for reports."""
        out: dict[int, Counter] = {}
        for step, kind, name, bucket in self.events:
            out.setdefault(step, Counter())[f"{kind} {name} {bucket}"] += 1
        return {step: dict(counts) for step, counts in sorted(out.items())}

    def _wrap(self, owner, name: str, kind: str) -> None:
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            self.events.append((self.step, kind, name, _bucket(sys._getframe(1))))
            return original(*args, **kwargs)

        self._replace(owner, name, counted)

    def _replace(self, owner, name: str, value) -> None:
        own = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name)
        self._undo.append((owner, name, own))
        setattr(owner, name, value)


def _bucket(frame) -> str:
    while frame is not None and frame.f_code.co_filename.startswith(_SKIP):
        frame = frame.f_back
    if frame is None:
        return "other"
    path = frame.f_code.co_filename.replace("\\", "/")
    for part, bucket in _BUCKETS:
        if part in path:
            return bucket
    return "other"
