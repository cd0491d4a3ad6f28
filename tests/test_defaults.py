"""One source of defaults: a setting params.yaml holds has no different default in code.

Each settings class the stages build from a params.yaml section (``config.from_mapping(Cls,
config.section(params, "x"), "x")``) is mapped to that section below. For every field with a code
default and a value in params.yaml, the two must be equal (nested mappings key by key), so a
library caller or a test that leans on a default gets what the pipeline runs. A second test
finds every ``from_mapping`` call in src/ and pipeline/ and fails on a class missing from the map,
so a new settings class cannot slip past the first.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
from pathlib import Path
from typing import Any

from autoencoders import config

ROOT = Path(__file__).resolve().parents[1]

# Settings class (module, class name) -> the params.yaml section it is built from.
MIRRORS: dict[tuple[str, str], str] = {
    # pipeline/train.py, tune@V, bench-train: training.resolve_hyperparameters(train_section, ...)
    ("autoencoders.training.hyperparameters", "TrainSettings"): "train",
    # pipeline/tune.py -> tuning.space.plan_search: from_mapping(TuneSettings, tune_section)
    ("autoencoders.tuning.space", "TuneSettings"): "tune",
    # pipeline/fetch.py, pipeline/preprocess.py, make bench-data: from_mapping(DataParams, data)
    ("autoencoders.data.datasets", "DataParams"): "data",
    # DataParams' parent: the image-folder keys of the same `data` section
    ("autoencoders.data.folders", "FolderParams"): "data",
    # pipeline/evaluate.py, pipeline/report.py: from_mapping(EvaluateParams, evaluate)
    ("autoencoders.evaluation.outputs", "EvaluateParams"): "evaluate",
    # pipeline/cluster.py, make cluster-seeds: from_mapping(HeadParams, cluster)
    ("autoencoders.clustering.head", "HeadParams"): "cluster",
    # pipeline/export.py: from_mapping(ExportConfig, export)
    ("autoencoders.export.convert", "ExportConfig"): "export",
    # pipeline/export.py: from_mapping(AnomalyParams, anomaly)
    ("autoencoders.anomaly.params", "AnomalyParams"): "anomaly",
    # AnomalyParams.score_config builds it from the same `anomaly` section (its docstring says
    # so); fit_score_model(config=None) falls back on its defaults.
    ("autoencoders.anomaly.score_model", "ScoreConfig"): "anomaly",
    # make bench-anomaly (benchmarks one-class): from_mapping(OneClassConfig, anomaly_bench)
    ("autoencoders.benchmarks.one_class", "OneClassConfig"): "anomaly_bench",
    # make bench-defects (benchmarks defects): from_mapping(DefectsConfig, defects_bench)
    ("autoencoders.benchmarks.defects", "DefectsConfig"): "defects_bench",
    # make bench (benchmarks latency): from_mapping(BenchConfig, bench)
    ("autoencoders.benchmarks.onnx_latency", "BenchConfig"): "bench",
    # make bench-train (benchmarks training): from_mapping(TrainBenchConfig, bench_train)
    ("autoencoders.benchmarks.training_speed", "TrainBenchConfig"): "bench_train",
    # models/derived.derive_params: from_mapping(DeriveParams, derive)
    ("autoencoders.models.derived", "DeriveParams"): "derive",
    # make bench-photos (benchmarks photos): from_mapping(PhotosConfig, photos_bench)
    ("autoencoders.benchmarks.photos", "PhotosConfig"): "photos_bench",
}

# Module-level defaults that stand for one params.yaml key.
CONSTANTS: dict[tuple[str, str], str] = {
    # backend.variant_backend's fallback when neither train.backend nor the variant's is set
    ("autoencoders.training.backend", "DEFAULT"): "train.backend",
    # AnomalyParams.target_fpr's default
    ("autoencoders.anomaly.thresholds", "DEFAULT_TARGET_FPR"): "anomaly.target_fpr",
}

# Classes passed to from_mapping that mirror no single section, and why.
NOT_MIRRORS = {
    # models.variant.parse_config: `entry.config_class`, an architecture or objective config
    # built from one variant's block. Its defaults are the reference design that a variant
    # overrides field by field (DESIGN.md), so each variant holds its own values by intent.
    "config_class",
    # config._check_type: a nested dataclass annotation, reached through one of the classes above
    "annotation",
}

# Mismatches whose fix belongs in a file another change holds at the moment: "Class.field" ->
# the change to make there. Empty it as each is fixed; the test fails on an entry that agrees.
PENDING: dict[str, str] = {}


def _load_params() -> dict[str, Any]:
    return config.load_params(ROOT / "params.yaml")


def _import(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


def _normal(value: Any) -> Any:
    """Tuples as lists and YAML's numeric strings ("1e-3") as floats, for comparison."""
    if isinstance(value, tuple | list):
        return [_normal(item) for item in value]
    if isinstance(value, dict):
        return {key: _normal(item) for key, item in value.items()}
    if isinstance(value, str):
        try:
            return float(value) if any(c.isdigit() for c in value) else value
        except ValueError:
            return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _compare(default: Any, held: Any, key: str) -> list[tuple[str, Any, Any]]:
    """(params key, code default, params.yaml value) for each difference, nested key by key."""
    if dataclasses.is_dataclass(default) and isinstance(held, dict):
        default = dataclasses.asdict(default)
    if isinstance(default, dict) and isinstance(held, dict):
        found = []
        for name in sorted(set(default) | set(held)):
            if name not in held:
                continue  # params.yaml leaves it to the code
            if name not in default:
                found.append((f"{key}.{name}", "<absent>", held[name]))
            else:
                found.extend(_compare(default[name], held[name], f"{key}.{name}"))
        return found
    return [] if _normal(default) == _normal(held) else [(key, default, held)]


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def mismatches(params: dict[str, Any]) -> dict[str, tuple[str, Any, Any]]:
    """``{"Class.field": (params key, code default, params.yaml value)}`` over MIRRORS and
    CONSTANTS."""
    found: dict[str, tuple[str, Any, Any]] = {}
    for (module, name), section_name in MIRRORS.items():
        cls = _import(module, name)
        section = config.section(params, section_name)
        for field in dataclasses.fields(cls):
            default = _field_default(field)
            if not field.init or default is dataclasses.MISSING or field.name not in section:
                continue
            key = f"{section_name}.{field.name}"
            for params_key, code, held in _compare(default, section[field.name], key):
                found[f"{name}.{field.name}" + params_key[len(key) :]] = (params_key, code, held)
    for (module, name), dotted in CONSTANTS.items():
        default = _import(module, name)
        for params_key, code, held in _compare(default, config.section(params, dotted), dotted):
            found[f"{module.rsplit('.', 1)[-1]}.{name}"] = (params_key, code, held)
    return found


def test_code_defaults_equal_params_yaml() -> None:
    found = mismatches(_load_params())
    unexpected = {key: value for key, value in found.items() if key not in PENDING}
    lines = [
        f"{key}: code default {code!r}, params.yaml {params_key} = {held!r}"
        for key, (params_key, code, held) in sorted(unexpected.items())
    ]
    assert not lines, "code defaults that disagree with params.yaml:\n" + "\n".join(lines)
    fixed = sorted(set(PENDING) - set(found))
    assert not fixed, f"fixed, so drop them from PENDING: {fixed}"
    for key, change in PENDING.items():  # each names its file and the change, from -> to
        assert change.startswith("src/") and "->" in change, key


def test_every_params_settings_class_is_mapped() -> None:
    """Every class a stage or make target builds with from_mapping is in MIRRORS (or, with its
    reason, in NOT_MIRRORS)."""
    mapped = {name for _, name in MIRRORS}
    built = set()
    for folder in ("src/autoencoders", "pipeline"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if callee != "from_mapping":
                    continue
                first = node.args[0]
                built.add(first.attr if isinstance(first, ast.Attribute) else first.id)
    assert built - mapped - NOT_MIRRORS == set()
    # The scan is real: it finds the stages' classes.
    assert {"TrainSettings", "HeadParams", "ExportConfig", "config_class"} <= built


def test_comparison_flags_a_disagreeing_default() -> None:
    """The comparison itself can fail: a changed section value and a nested key are reported."""
    params = _load_params()
    params["train"] = {**params["train"], "epochs": params["train"]["epochs"] + 1}
    bench = dict(params["anomaly_bench"])
    bench["architecture"] = {**bench["architecture"], "latent_dim": 3}
    params["anomaly_bench"] = bench
    found = mismatches(params)
    assert found["TrainSettings.epochs"][0] == "train.epochs"
    assert found["OneClassConfig.architecture.latent_dim"][0] == (
        "anomaly_bench.architecture.latent_dim"
    )
