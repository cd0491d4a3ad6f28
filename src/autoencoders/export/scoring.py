"""The export's anomaly scorer: fitted on normal data, converted, gated, thresholded, measured.

``prepare(autoencoder, settings, ...)`` fits the ``anomaly.ScoreModel`` on the training codes
(a seeded ``anomaly.fit_subsample`` of them) and the validation outputs (Keras; never the test
split) and returns a ``ScorerExport``, or None
with the reason when the scorer cannot apply to the variant (``scorer.unsupported``).
``convert.export_models(..., extra=scorer_export)`` then calls ``ScorerExport.write`` inside the
export's staging directory: ``scorer.onnx`` is converted and canonicalised like the other
models and must pass ``scorer.scorer_parity``; the threshold is chosen by ``anomaly.threshold``
on ONNX Runtime's scores of the normal validation images (with the labelled validation
anomalies for ``f1_optimal``), so that ``inference.Scorer`` flags exactly what it recorded.
The threshold goes into the scorer's metadata and the card; the test split is scored last, for
``metrics/export/<v>.json`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import anomaly, data, fileio
from autoencoders.export import card, convert, scorer

FLAG_RULE = "score > threshold"


def prepare(
    autoencoder: Any,
    settings: anomaly.AnomalyParams,
    *,
    seed: int,
    x_train: np.ndarray,
    x_val: np.ndarray,
    evaluation: Mapping[str, Any],
) -> tuple[ScorerExport | None, str | None]:
    """(the fitted ScorerExport, None), or (None, why the variant gets no scorer).

    ``evaluation``: ``val_anomalies`` (images or None), ``x_test``, ``y_test`` and
    ``normal_classes`` (the data card's, or None)."""
    reason = scorer.unsupported(autoencoder, settings.scores)
    if reason is not None:
        return None, reason
    if settings.threshold == "f1_optimal" and evaluation["val_anomalies"] is None:
        raise anomaly.AnomalyConfigError(
            "anomaly.threshold f1_optimal needs labelled validation anomalies: set "
            "data.normal_classes (preprocess keeps the other classes aside) or use target_fpr."
        )
    objective = autoencoder.config.objective
    config = settings.score_config(objective.loss, getattr(objective, "beta", 1.0), seed)
    train_codes = _train_codes(autoencoder, x_train, settings.fit_subsample, seed)
    score_model = anomaly.fit_score_model(
        train_codes, anomaly.keras_outputs(autoencoder, x_val), config
    )
    return ScorerExport(autoencoder, score_model, settings, x_val, evaluation), None


def _train_codes(autoencoder: Any, x_train: Any, size: int, seed: int) -> np.ndarray:
    """Codes of the seeded ``size`` training images; a Split of shards is read in batches."""
    if isinstance(x_train, np.ndarray):
        return autoencoder.encode(data.subset(x_train, size, seed))
    sample = x_train.sample(size, seed)
    batches = sample.batches(sample.codes_batch)
    return np.concatenate([autoencoder.encode(batch) for batch in batches])


def onnx_scores(path: str | Path, images: np.ndarray) -> np.ndarray:
    """The ``score`` output of a scorer.onnx for ``images`` (float32 NHWC), in batches: (N,)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=[convert.PARITY_PROVIDER])
    images = np.asarray(images, dtype=np.float32)
    # Batches sized by their pixels: 1,024 MNIST digits, 170 images of 64x64x3 (the scorer's
    # activations of 1,024 of those held gigabytes).
    batch = data.splits.stream_batch(images.shape[1:])
    return np.concatenate(
        [
            session.run([scorer.SCORE_OUTPUT], {convert.ENCODER_INPUT: images[i : i + batch]})[0]
            for i in range(0, len(images), batch)
        ]
    )


class ScorerExport:
    """What ``convert.export_models`` calls to add scorer.onnx and score_model.json to an export;
    ``metrics`` holds the ``anomaly`` block of metrics/export/<v>.json once written."""

    def __init__(
        self,
        autoencoder: Any,
        score_model: anomaly.ScoreModel,
        settings: anomaly.AnomalyParams,
        x_val: np.ndarray,
        evaluation: Mapping[str, Any],
    ) -> None:
        self.graph = scorer.ScorerGraph(autoencoder, score_model)
        self.score_model = score_model
        self.settings = settings
        self.x_val = x_val
        self.evaluation = evaluation
        self.metrics: dict[str, Any] | None = None

    def write(
        self, staging: Path, common: Mapping[str, Any], config: convert.ExportConfig
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Convert, gate and threshold the scorer in ``staging``; ({"scorer": card file},
        {"scorer": parity figures}, {"anomaly": the card's section})."""
        import onnx

        path = staging / scorer.SCORER_FILE
        dims = list(common["image_shape"])
        proto = convert.convert_function(
            self.graph,
            input_name=convert.ENCODER_INPUT,
            input_dims=dims,
            opset=common["opset"],
            name=f"the {common['variant']} anomaly scorer",
        )
        onnx.save_model(proto, str(path))
        figures = self._gate(path, common, config)
        normal, anomalous = self._validation_scores(path)
        threshold = anomaly.choose_threshold(
            self.settings.threshold,
            normal,
            anomalous,
            target_fpr=self.settings.target_fpr,
            value=self.settings.value,
        )
        section = self._card_section(threshold)
        card.set_metadata(proto, self._metadata(common, section))
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as error:
            raise convert.ExportError(
                f"{common['variant']} scorer: onnx.checker rejected it: {error}"
            ) from error
        onnx.save_model(proto, str(path))
        fileio.write_json(staging / scorer.SCORE_MODEL_FILE, self.score_model.to_dict())
        section["score_model"] = {
            "path": scorer.SCORE_MODEL_FILE,
            "sha256": fileio.sha256_file(staging / scorer.SCORE_MODEL_FILE),
        }
        self.metrics = anomaly_metrics(
            threshold,
            {"normal": normal, "anomalies": anomalous},
            onnx_scores(path, self.evaluation["x_test"]),
            self.evaluation["y_test"],
            self.evaluation["normal_classes"],
        )
        card_file = {
            "path": scorer.SCORER_FILE,
            "sha256": fileio.sha256_file(path),
            "input": {"name": convert.ENCODER_INPUT, "shape": [None, *dims], "dtype": "float32"},
            "outputs": [
                {"name": scorer.SCORE_OUTPUT, "shape": [None], "dtype": "float32"},
                {"name": scorer.MAP_OUTPUT, "shape": [None, *dims], "dtype": "float32"},
            ],
        }
        return {"scorer": card_file}, {"scorer": figures}, {"anomaly": section}

    def _gate(
        self, path: Path, common: Mapping[str, Any], config: convert.ExportConfig
    ) -> dict[str, Any]:
        images = self.evaluation["x_test"][: max(config.parity_batch_sizes)]
        figures = scorer.scorer_parity(path, self.graph, images, config.parity_batch_sizes)
        terms = int(np.prod(common["image_shape"])) + int(common["latent_dim"])
        allowed = scorer.score_tolerance(config.tolerance, terms)
        against = {
            "keras": "the score of the TensorFlow graph",
            "score_model": "ScoreModel.score on Keras' outputs",
            "anomaly_map": "the TensorFlow graph's map (per-image sums)",
        }
        for key, what in against.items():
            if figures[key]["scaled_diff"] > allowed:
                raise convert.ParityError(
                    f"{common['variant']} scorer: ONNX Runtime differs from {what} by up to "
                    f"{figures[key]['max_abs_diff']:.3g} (scaled {figures[key]['scaled_diff']:.3g}"
                    f") > tolerance {allowed:.3g}, by batch size {figures[key]['by_batch_size']};"
                    " the previous export is kept."
                )
        keras_figures = figures.pop("keras")
        return {**keras_figures, "score_tolerance": allowed, **figures}

    def _validation_scores(self, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
        """ONNX Runtime's scores of the normal validation images and of the labelled
        validation anomalies (None without them)."""
        anomalous = self.evaluation["val_anomalies"]
        if anomalous is not None and len(anomalous) > 0:
            return onnx_scores(path, self.x_val), onnx_scores(path, anomalous)
        return onnx_scores(path, self.x_val), None

    def _card_section(self, threshold: anomaly.Threshold) -> dict[str, Any]:
        config = self.score_model.config
        return {
            "scores": list(config.scores),
            "pixel_loss": config.loss,
            "standardisation": {
                name: s._asdict() for name, s in self.score_model.standardisation.items()
            },
            "score": "sum over scores of (score - location) / scale; higher is more anomalous",
            "anomaly_map": f"per-pixel {config.loss} of the reconstruction (sums to the "
            "reconstruction score)",
            "threshold": threshold.to_dict(),
            "flag": FLAG_RULE,
            "normal_classes": self.evaluation["normal_classes"],
        }

    @staticmethod
    def _metadata(common: Mapping[str, Any], section: Mapping[str, Any]) -> dict[str, Any]:
        dims = list(common["image_shape"])
        threshold = section["threshold"]
        return {
            **common,
            "model": "scorer",
            "input_name": convert.ENCODER_INPUT,
            "input_shape": [convert.BATCH_AXIS, *dims],
            "output_names": [scorer.SCORE_OUTPUT, scorer.MAP_OUTPUT],
            "output_shapes": [[convert.BATCH_AXIS], [convert.BATCH_AXIS, *dims]],
            "threshold": threshold["value"],
            "threshold_rule": threshold["rule"],
            "validation_fpr": threshold["fpr"],
            "target_fpr": threshold["target_fpr"],
            "flag": FLAG_RULE,
            "score_components": section["scores"],
            "standardisation": section["standardisation"],
            "pixel_loss": section["pixel_loss"],
        }


def score_statistics(scores: np.ndarray) -> dict[str, float]:
    """Mean, std, min, median, 99th percentile and max of a score vector."""
    low, median, high = np.percentile(scores, [0, 50, 99])
    return {
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "min": float(low),
        "median": float(median),
        "p99": float(high),
        "max": float(np.max(scores)),
    }


def anomaly_metrics(
    threshold: anomaly.Threshold,
    validation: Mapping[str, np.ndarray | None],
    test_scores: np.ndarray,
    test_labels: np.ndarray | None,
    normal_classes: Sequence[int] | None,
) -> dict[str, Any]:
    """metrics/export/<v>.json's ``anomaly`` block: the threshold, its rule and validation FPR,
    score statistics, and on the test split either the share flagged (no normal classes or no
    labels: every image counts) or, with both, AUROC, AUPRC and FPR/TPR/precision/F1 at the
    threshold. ``validation``: ``normal`` scores and ``anomalies`` (labelled ones, or None),
    which add the validation AUROC and AUPRC."""
    normal, anomalous = validation["normal"], validation["anomalies"]
    block: dict[str, Any] = {
        "rule": threshold.rule,
        "threshold": threshold.value,
        "target_fpr": threshold.target_fpr,
        "validation": {"images": threshold.n_normal, "fpr": threshold.fpr},
    }
    if anomalous is not None:
        labels = np.r_[np.zeros(len(normal), np.int64), np.ones(len(anomalous), np.int64)]
        scores = np.r_[normal, anomalous]
        block["validation"].update(
            anomalies=len(anomalous),
            auroc=anomaly.auroc(labels, scores),
            auprc=anomaly.auprc(labels, scores),
            **({"f1": threshold.f1} if threshold.f1 is not None else {}),
        )
    flagged = threshold.flag(test_scores)
    test: dict[str, Any] = {"images": len(test_scores), "share_flagged": float(flagged.mean())}
    if normal_classes is not None and test_labels is not None:
        is_anomaly = (~np.isin(test_labels, list(normal_classes))).astype(np.int64)
        test["anomalies"] = int(is_anomaly.sum())
        if 0 < test["anomalies"] < len(is_anomaly):
            test.update(anomaly.evaluate(is_anomaly, test_scores, threshold.value))
    block["test"] = test
    block["scores"] = {
        "validation": score_statistics(normal),
        "test": score_statistics(test_scores),
    }
    return block


__all__ = ["FLAG_RULE", "ScorerExport", "anomaly_metrics", "onnx_scores", "prepare"]
