"""The deployable clusterer (clusters.onnx): the inductive partition distilled and exported.

A hand-built ONNX encoder (8x8 images -> 3 numbers, one MatMul) stands in for an export; the
clusterer is checked against scikit-learn's own MLP and served by ``inference.Clusterer``.
"""

from __future__ import annotations

import numpy as np
import pytest

from autoencoders import fileio, inference
from autoencoders.clustering import deploy
from autoencoders.evaluation import latent

SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def encoder_path(tmp_path_factory):
    import onnx
    from onnx import helper, numpy_helper

    weight = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["images"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weight"], ["code"]),
    ]
    graph = helper.make_graph(
        nodes,
        "encoder",
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["batch", *SHAPE])],
        [helper.make_tensor_value_info("code", onnx.TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(weight, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path_factory.mktemp("export") / "encoder.onnx"
    onnx.save(model, str(path))
    return path, weight


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four kinds of 8x8 images: a bright quadrant each, plus noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    images = rng.random((n, *SHAPE), dtype=np.float32) * 0.3
    for kind in range(4):
        rows, cols = divmod(kind, 2)
        images[labels == kind, rows * 4 : rows * 4 + 4, cols * 4 : cols * 4 + 4] += 0.7
    return images, labels


def test_exported_clusterer_matches_sklearns_mlp_and_generalises(encoder_path, tmp_path):
    from sklearn.neural_network import MLPClassifier

    path, weight = encoder_path
    train, train_labels = _images(400, seed=1)
    test, test_labels = _images(200, seed=2)
    codes = train.reshape(400, -1) @ weight
    net = deploy.fit_clusterer(codes, train_labels, n_clusters=5, seed=0, hidden_units=16)
    folder = tmp_path / "clusterer"
    parity = deploy.write_clusterer(
        folder, path, net, parity_images=test[:32], tolerance=1e-5, card={"variant": "toy"}
    )
    assert parity["max_abs_diff"] <= 1e-5 and parity["images"] == 32
    card = fileio.read_json(folder / "model_card.json")
    assert card["file"] == "clusters.onnx" and card["n_clusters"] == 5
    assert card["encoder_sha256"] == fileio.sha256_file(path) and card["parity"] == parity
    clusterer = inference.Clusterer(folder)
    assert clusterer.n_clusters == 5 and clusterer.metadata["variant"] == "toy"
    assert clusterer.metadata["output_name"] == "probabilities"
    assignments, probabilities = clusterer.cluster(test)
    # The reference: scikit-learn's MLP fitted the same way, on the standardised codes.
    mean, scale = codes.mean(axis=0), codes.std(axis=0)
    reference = MLPClassifier((16,), max_iter=100, random_state=0)
    reference.fit((codes - mean) / scale, train_labels)
    expected = reference.predict_proba((test.reshape(200, -1) @ weight - mean) / scale)
    np.testing.assert_allclose(probabilities[:, :4], expected, atol=1e-5)
    assert probabilities[:, 4].max() < 1e-6  # a cluster no code carries is never assigned
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert latent.clustering_accuracy(test_labels, assignments) >= 0.95  # unseen images


def test_a_clusterer_over_the_parity_tolerance_is_not_written(encoder_path, tmp_path):
    path, weight = encoder_path
    images, labels = _images(100, seed=3)
    net = deploy.fit_clusterer(
        images.reshape(100, -1) @ weight, labels, n_clusters=4, seed=0, hidden_units=8, epochs=5
    )
    out = tmp_path / "clusters.onnx"
    with pytest.raises(RuntimeError, match="export.tolerance"):
        deploy.write_onnx(path, net, out, parity_images=images, tolerance=-1.0, metadata={})
    assert not out.exists()
