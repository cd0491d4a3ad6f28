"""A deployable clusterer: the inductive partition distilled into ``clusters.onnx``.

    net = fit_clusterer(train_codes, train_partition, n_clusters=10, seed=42)
    probabilities = net.probabilities(codes)                # numpy reference (N, n_clusters)
    write_onnx(encoder_onnx, net, "clusterers/dense/clusters.onnx", variant="dense")

UMAP's manifold has no closed form for new points, so the head's partition of training codes
(the seeds' consensus) is learnt by a small network, codes -> standardised -> ReLU layer(s) ->
softmax, as a parametric UMAP learns the embedding. Its layers are appended to the variant's
exported encoder as ONNX operators: the file maps images ("images") to cluster posteriors
("probabilities"), what ``inference.Clusterer`` and ``python -m autoencoders cluster`` serve, as
IDEC's ``clusters.onnx``. The network is fitted with scikit-learn (no TensorFlow), one BLAS
thread, seeded.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import fileio
from autoencoders.threads import small_blas

OUTPUT = "probabilities"
FILE = "clusters.onnx"  # inference.Clusterer's default name


@dataclasses.dataclass(frozen=True)
class Clusterer:
    """Standardisation, then dense layers (ReLU between), then softmax: float64 weights."""

    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    weights: tuple[np.ndarray, ...]  # (D, H), ..., (H, n_clusters)
    biases: tuple[np.ndarray, ...]

    def logits(self, codes: np.ndarray) -> np.ndarray:
        hidden = (np.asarray(codes, np.float64).reshape(len(codes), -1) - self.mean) / self.scale
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            hidden = hidden @ weight + bias
            if index < len(self.weights) - 1:
                hidden = np.maximum(hidden, 0.0)
        return hidden

    def probabilities(self, codes: np.ndarray) -> np.ndarray:
        """(N, n_clusters) softmax posteriors of (N, ...) codes, the ONNX graph's reference."""
        logits = self.logits(codes)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)


def fit_clusterer(
    codes: np.ndarray,
    partition: np.ndarray,
    *,
    n_clusters: int,
    seed: int,
    hidden_units: int = 256,
    epochs: int = 100,
) -> Clusterer:
    """A seeded MLP (one ReLU layer of ``hidden_units``, Adam, ``epochs``) from standardised
    ``codes`` to ``partition``; every cluster keeps an output even if no code carries it."""
    from sklearn.neural_network import MLPClassifier

    flat = np.asarray(codes, np.float64).reshape(len(codes), -1)
    mean = flat.mean(axis=0)
    scale = flat.std(axis=0)
    scale[scale == 0] = 1.0
    network = MLPClassifier((hidden_units,), max_iter=epochs, random_state=seed)
    with warnings.catch_warnings(), small_blas():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the epochs are a budget
        network.fit((flat - mean) / scale, partition)
    weights, biases = list(network.coefs_), list(network.intercepts_)
    # Clusters the network saw (all, unless the partition had an empty one) -> all n_clusters:
    # an unseen cluster gets a very negative logit.
    last = np.zeros((weights[-1].shape[0], n_clusters))
    bias = np.full(n_clusters, -1e4)
    last[:, network.classes_] = weights[-1]
    bias[network.classes_] = biases[-1]
    if len(network.classes_) == 2:  # a binary MLP has one logistic output: make it two logits
        last[:, network.classes_[0]], bias[network.classes_[0]] = 0.0, 0.0
    weights[-1], biases[-1] = last, bias
    return Clusterer(mean, scale, tuple(weights), tuple(biases))


def clusterer_graph(encoder: Any, net: Clusterer) -> Any:
    """The encoder's ONNX ``ModelProto`` with ``net`` appended: images -> ``probabilities``."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(encoder)
    graph = model.graph
    code = graph.output[0].name

    def constant(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    nodes = [
        helper.make_node("Flatten", [code], ["cluster_flat"], axis=1),
        helper.make_node("Sub", ["cluster_flat", constant("cluster_mean", net.mean)], ["c_0"]),
        helper.make_node("Div", ["c_0", constant("cluster_scale", net.scale)], ["h_0"]),
    ]
    for index, (weight, bias) in enumerate(zip(net.weights, net.biases, strict=True)):
        w, b = constant(f"cluster_w{index}", weight), constant(f"cluster_b{index}", bias)
        nodes.append(helper.make_node("MatMul", [f"h_{index}", w], [f"m_{index}"]))
        out = f"a_{index}" if index < len(net.weights) - 1 else "logits"
        nodes.append(helper.make_node("Add", [f"m_{index}", b], [out]))
        if out != "logits":
            nodes.append(helper.make_node("Relu", [out], [f"h_{index + 1}"]))
    nodes.append(helper.make_node("Softmax", ["logits"], [OUTPUT], axis=-1))
    graph.node.extend(nodes)
    del graph.output[:]
    n_clusters = int(net.weights[-1].shape[1])
    graph.output.append(
        helper.make_tensor_value_info(OUTPUT, onnx.TensorProto.FLOAT, ["batch", n_clusters])
    )
    onnx.checker.check_model(model)
    return model


def write_onnx(
    encoder_path: Path,
    net: Clusterer,
    out_path: Path,
    *,
    parity_images: np.ndarray,
    tolerance: float,
    metadata: dict[str, str],
) -> dict[str, Any]:
    """Write ``clusters.onnx`` (atomically) if ONNX Runtime's posteriors of ``parity_images``
    match the numpy reference on the encoder's codes within ``tolerance``; returns the parity
    figures. A larger gap raises: the file is not written."""
    import onnx
    import onnxruntime

    encoder = onnx.load(str(encoder_path))
    model = clusterer_graph(encoder, net)
    for key, value in {**{p.key: p.value for p in encoder.metadata_props}, **metadata}.items():
        _set_metadata(model, key, value)
    data = model.SerializeToString()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    run = lambda blob: onnxruntime.InferenceSession(  # noqa: E731
        blob, options, providers=["CPUExecutionProvider"]
    ).run(None, {encoder.graph.input[0].name: parity_images})[0]
    reference = net.probabilities(run(encoder.SerializeToString()))
    gap = float(np.max(np.abs(run(data) - reference)))
    if not gap <= tolerance:
        raise RuntimeError(
            f"{out_path}: ONNX Runtime differs from the numpy clusterer by {gap:.3g} > "
            f"{tolerance:g} (export.tolerance): the clusterer was not written."
        )
    with fileio.atomic_path(out_path) as staging:
        Path(staging).write_bytes(data)
    return {"max_abs_diff": gap, "tolerance": tolerance, "images": len(parity_images)}


def write_clusterer(
    directory: Path,
    encoder_path: Path,
    net: Clusterer,
    *,
    parity_images: np.ndarray,
    tolerance: float,
    card: dict[str, Any],
) -> dict[str, Any]:
    """``directory`` swapped in whole: ``clusters.onnx`` (``write_onnx``'s gate) and its
    ``model_card.json`` (``card`` plus the file, input, output, encoder checksum, parity);
    returns the parity figures."""
    with fileio.atomic_directory(directory) as staging:
        parity = write_onnx(
            encoder_path,
            net,
            staging / FILE,
            parity_images=parity_images,
            tolerance=tolerance,
            metadata={
                "variant": str(card.get("variant")),
                "model": "clusters",
                "output_name": OUTPUT,
                "output_shape": json.dumps(["batch", int(net.weights[-1].shape[1])]),
            },
        )
        card = card | {
            "file": FILE,
            "input": "images",
            "output": OUTPUT,
            "n_clusters": int(net.weights[-1].shape[1]),
            "encoder_sha256": fileio.sha256_file(encoder_path),
            "parity": parity,
        }
        fileio.write_json(staging / "model_card.json", card)
    return parity


def _set_metadata(model: Any, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = key, value
