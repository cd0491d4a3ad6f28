"""A Triton Inference Server model repository from the ONNX exports and anomaly scorers.

    python -m autoencoders.services.triton --exports exports --scorers scorers --out exports/triton
        [--max-batch-size 1024] [--instances 1] [--kind auto|cpu|gpu]

For every export directory ``exports/<variant>/`` this writes one Triton model per ONNX file it
holds (``encoder.onnx``, ``decoder.onnx`` and, for IDEC, ``clusters.onnx``), and for every
scorer directory ``scorers/<variant>/`` (the ``anomaly@V`` stage's) one for its
``scorer.onnx``::

    <out>/<variant>-encoder/config.pbtxt
    <out>/<variant>-encoder/1/model.onnx

Each ``config.pbtxt`` names the ``onnxruntime_onnx`` platform, turns on ``dynamic_batching`` and
takes every input's and output's name, data type and per-example dims from the ONNX graph itself,
so the config cannot drift from the model it describes. ``max_batch_size`` is
``--max-batch-size`` (default ``DEFAULT_MAX_BATCH_SIZE``) and ``instance_group`` runs
``--instances`` copies of each model on ``--kind`` (``auto``: where Triton places it). A graph
whose first axis is a fixed number cannot be batched by Triton and is rejected, naming the file
and the stage that rewrites it. Without a scorers folder (the anomaly stage has not run) the
repository holds no scorer models.

Every graph is read and checked before anything is written; then each model directory is swapped
in whole (``fileio.atomic_directory``), so Triton polling the repository never sees a model
without its config or a half-copied ``model.onnx``. Models of other names already in ``--out``
are left as they are. Start a server on it with
``tritonserver --model-repository=exports/triton`` (docs/triton.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoencoders import errors, fileio, paths

PROGRAM = "python -m autoencoders.services.triton"
PLATFORM = "onnxruntime_onnx"
CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.onnx"
VERSION = "1"
# The graphs' batch axis is dynamic, so this bounds one request's memory on the server, not the
# model; a client with a larger batch splits it into requests of at most this many.
DEFAULT_MAX_BATCH_SIZE = 1024
# --kind -> Triton's ModelInstanceGroup.Kind; auto writes no kind, so Triton places the instances
# (on every GPU it sees, else on the CPU).
INSTANCE_KINDS = {"auto": None, "cpu": "KIND_CPU", "gpu": "KIND_GPU"}
# role -> the file that holds it; the Triton model is named <variant>-<role>.
ROLE_FILES = {
    "encoder": "encoder.onnx",
    "decoder": "decoder.onnx",
    "scorer": "scorer.onnx",
    "clusters": "clusters.onnx",
}
# Which roles each stage's folder holds: export@V's exports/<v>, anomaly@V's scorers/<v>.
EXPORT_ROLES = ("encoder", "decoder", "clusters")
SCORER_ROLES = ("scorer",)
# ONNX TensorProto element type name -> Triton's DataType (model_config.proto).
TRITON_TYPES = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FLOAT16": "TYPE_FP16",
    "FLOAT": "TYPE_FP32",
    "DOUBLE": "TYPE_FP64",
    "BFLOAT16": "TYPE_BF16",
    "STRING": "TYPE_STRING",
}


def _rewrite(directory: Path) -> str:
    """How to rewrite a variant's folder: re-run the stage that wrote it."""
    if (directory / ROLE_FILES["scorer"]).is_file():
        return f"re-run its anomaly stage (dvc repro --force anomaly@{directory.name})"
    return f"re-export it (dvc repro --force export@{directory.name})"


class TritonRepositoryError(errors.UserError, ValueError):
    """An export cannot be served by Triton as it is; the message names the file and the fix."""


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One model input or output as Triton sees it: ``dims`` per example (batch axis dropped),
    -1 where the graph leaves an axis variable."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Signature:
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


@dataclasses.dataclass(frozen=True)
class RepositoryModel:
    """One model to write: its Triton name, the ONNX file to copy and its config text."""

    name: str
    source: Path
    config: str


def _shape_text(dims: Sequence[Any]) -> str:
    """An ONNX shape as the user would write it: ``[batch, 28, 28, 1]`` (``?``: unnamed)."""

    def text(dim: Any) -> str:
        if dim.HasField("dim_value"):
            return str(dim.dim_value)
        return dim.dim_param or "?"

    return "[" + ", ".join(text(dim) for dim in dims) + "]"


def _tensor(value: Any, path: Path, what: str) -> Tensor:
    """The Triton view of one graph input or output; a fixed or missing batch axis is refused."""
    import onnx

    if value.type.WhichOneof("value") != "tensor_type":
        raise TritonRepositoryError(f"{path}: {what} {value.name!r} is not a tensor.")
    tensor_type = value.type.tensor_type
    element = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
    if element not in TRITON_TYPES:
        raise TritonRepositoryError(
            f"{path}: {what} {value.name!r} has element type {element}, which Triton has no "
            f"type for (it has {', '.join(TRITON_TYPES)})."
        )
    dims = list(tensor_type.shape.dim)
    if not tensor_type.HasField("shape") or not dims:
        raise TritonRepositoryError(
            f"{path}: {what} {value.name!r} has no batch axis (shape {_shape_text(dims)}); "
            f"{_rewrite(path.parent)} with a dynamic batch axis."
        )
    if dims[0].HasField("dim_value"):
        raise TritonRepositoryError(
            f"{path}: {what} {value.name!r} has a fixed batch dimension of {dims[0].dim_value} "
            f"(shape {_shape_text(dims)}), but Triton's dynamic batching needs a dynamic first "
            f"axis; {_rewrite(path.parent)} with a dynamic batch axis."
        )
    per_example = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims[1:])
    return Tensor(name=value.name, data_type=TRITON_TYPES[element], dims=per_example)


def read_signature(path: str | Path) -> Signature:
    """Inputs and outputs of the ONNX graph at ``path`` (initializers are not inputs)."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - protobuf's DecodeError and onnx's own errors
        raise errors.corrupt(path, error, _rewrite(path.parent)) from None
    graph = model.graph
    initializers = {initializer.name for initializer in graph.initializer}
    inputs = tuple(
        _tensor(value, path, "input") for value in graph.input if value.name not in initializers
    )
    outputs = tuple(_tensor(value, path, "output") for value in graph.output)
    if not inputs or not outputs:
        raise TritonRepositoryError(f"{path}: the graph has no inputs or no outputs.")
    return Signature(inputs=inputs, outputs=outputs)


def _quoted(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tensor_text(tensor: Tensor) -> str:
    lines = [
        "  {",
        f"    name: {_quoted(tensor.name)}",
        f"    data_type: {tensor.data_type}",
    ]
    if tensor.dims:
        lines.append(f"    dims: [ {', '.join(map(str, tensor.dims))} ]")
    else:
        # A (batch,) tensor: Triton wants dims [1] reshaped to the empty per-example shape.
        lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    return "\n".join([*lines, "  }"])


def check_serving(max_batch_size: int, instances: int, kind: str) -> None:
    """Raise a one-line TritonRepositoryError unless the serving options are usable."""
    for option, value in (("--max-batch-size", max_batch_size), ("--instances", instances)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TritonRepositoryError(f"{option} must be a positive integer, got {value!r}.")
    if kind not in INSTANCE_KINDS:
        raise TritonRepositoryError(
            f"--kind must be one of {', '.join(INSTANCE_KINDS)}, got {kind!r}."
        )


def config_text(
    name: str,
    signature: Signature,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    source: str = "",
    *,
    instances: int = 1,
    kind: str = "auto",
) -> str:
    """The ``config.pbtxt`` of one model (Triton's ModelConfig in protobuf text format)."""
    check_serving(max_batch_size, instances, kind)
    lines = [f"# written by {PROGRAM} from {source}"] if source else []
    lines += [
        f"name: {_quoted(name)}",
        f"platform: {_quoted(PLATFORM)}",
        f"max_batch_size: {max_batch_size}",
    ]
    for field, tensors in (("input", signature.inputs), ("output", signature.outputs)):
        lines += [f"{field} [", ",\n".join(_tensor_text(tensor) for tensor in tensors), "]"]
    placement = f" kind: {INSTANCE_KINDS[kind]}" if INSTANCE_KINDS[kind] else ""
    lines.append(f"instance_group [ {{ count: {instances}{placement} }} ]")
    lines.append("dynamic_batching { }")
    return "\n".join(lines) + "\n"


def model_dirs(folder: str | Path, roles: Sequence[str] = EXPORT_ROLES) -> list[Path]:
    """Directories under ``folder`` holding the file of at least one of ``roles`` (hidden
    staging folders left by an interrupted write are skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"exports folder {folder} not found: run `dvc repro` first.")
    return [
        directory
        for directory in sorted(folder.iterdir())
        if directory.is_dir()
        and not directory.name.startswith(".")
        and any((directory / ROLE_FILES[role]).is_file() for role in roles)
    ]


def export_dirs(exports: str | Path) -> list[Path]:
    """Export directories under ``exports``: those holding an encoder, decoder or clusters."""
    return model_dirs(exports, EXPORT_ROLES)


def _plan_folder(directory: Path, roles: Sequence[str], **serving: Any) -> list[RepositoryModel]:
    """The models of one variant's export or scorer folder (``serving``: config_text's
    max_batch_size, instances and kind)."""
    models = []
    for role in roles:
        source = directory / ROLE_FILES[role]
        if not source.is_file():
            continue
        name = f"{directory.name}-{role}"
        provenance = f"{source} (sha256 {fileio.sha256_file(source)})"
        config = config_text(name, read_signature(source), source=provenance, **serving)
        models.append(RepositoryModel(name=name, source=source, config=config))
    return models


def plan_repository(
    exports: str | Path,
    *,
    scorers: str | Path | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    instances: int = 1,
    kind: str = "auto",
) -> list[RepositoryModel]:
    """Every model to write, from the export folders under ``exports`` and the scorer folders
    under ``scorers`` (None, or a folder that does not exist: no scorer models), each graph
    read and checked; raises before anything is written."""
    check_serving(max_batch_size, instances, kind)
    serving = {"max_batch_size": max_batch_size, "instances": instances, "kind": kind}
    models = []
    for export_dir in export_dirs(exports):
        models += _plan_folder(export_dir, EXPORT_ROLES, **serving)
    if not models:
        files = " or ".join(ROLE_FILES[role] for role in EXPORT_ROLES)
        raise TritonRepositoryError(
            f"no exports under {exports} (no folder holds {files}): "
            "run `dvc repro` (stage export@<variant>) first."
        )
    if scorers is not None and Path(scorers).is_dir():
        for scorer_dir in model_dirs(scorers, SCORER_ROLES):
            models += _plan_folder(scorer_dir, SCORER_ROLES, **serving)
    return models


def write_repository(
    exports: str | Path,
    out: str | Path,
    *,
    scorers: str | Path | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    instances: int = 1,
    kind: str = "auto",
) -> list[str]:
    """Write the Triton model repository ``out`` for every export under ``exports`` and every
    scorer under ``scorers``; return the model names written."""
    models = plan_repository(
        exports, scorers=scorers, max_batch_size=max_batch_size, instances=instances, kind=kind
    )
    out = Path(out)
    for model in models:
        with fileio.atomic_directory(out / model.name) as staging:
            (staging / CONFIG_FILE).write_text(model.config)
            (staging / VERSION).mkdir()
            shutil.copyfile(model.source, staging / VERSION / MODEL_FILE)
    return [model.name for model in models]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--exports", type=Path, default=paths.EXPORTS, help="exports folder (export@V's)"
    )
    parser.add_argument(
        "--scorers", type=Path, default=paths.SCORERS, help="scorers folder (anomaly@V's)"
    )
    parser.add_argument("--out", type=Path, default=paths.TRITON, help="model repository to write")
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULT_MAX_BATCH_SIZE,
        help="largest batch one request may carry (default %(default)s; clients split larger)",
    )
    parser.add_argument(
        "--instances", type=int, default=1, help="copies of each model Triton runs (default 1)"
    )
    parser.add_argument(
        "--kind",
        choices=tuple(INSTANCE_KINDS),
        default="auto",
        help="where the instances run (default auto: Triton's choice, every GPU else the CPU)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = write_repository(
        args.exports,
        args.out,
        scorers=args.scorers,
        max_batch_size=args.max_batch_size,
        instances=args.instances,
        kind=args.kind,
    )
    print(f"triton: {len(names)} models in {args.out}: {', '.join(names)}")
    if not args.scorers.is_dir():
        print(
            f"triton: no scorers folder {args.scorers}, so no scorer models "
            "(dvc repro anomaly@<variant> writes them)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(errors.cli(main, program=PROGRAM))
