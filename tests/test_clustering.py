"""The clustering head (UMAP + Gaussian mixture) and IDEC: known answers, export parity, inputs.

Fast by default; the test that trains IDEC for real is marked slow.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from autoencoders import __main__ as cli
from autoencoders import clustering, data, export, inference, manifold, models
from autoencoders.clustering import report as clustering_report
from autoencoders.config import ConfigError
from autoencoders.evaluation import latent
from autoencoders.export import stage as export_stage
from autoencoders.models import idec

IMAGE_SHAPE = (8, 8, 1)
IDEC_BLOCK = {
    "architecture": {"name": "dense", "latent_dim": 3, "hidden_units": [16]},
    "objective": {"name": "clustering", "n_clusters": 4, "update_interval": 5, "tol": 0.0},
}


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """10 well-separated Gaussian blobs in 50-d (unit spread, centres ~N(0, 10^2))."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 10.0, size=(10, 50))
    labels = np.random.default_rng(seed).integers(0, 10, size=n)
    points = centres[labels] + np.random.default_rng(seed + 1).normal(size=(n, 50))
    return points.astype(np.float32), labels


# --------------------------------------------------------------------------- the head


def test_head_recovers_gaussian_blobs_in_50d_both_protocols():
    test_codes, test_labels = _blobs(1200, seed=1)
    train_codes, train_labels = _blobs(1500, seed=2)
    params = clustering.HeadParams(
        inductive_subsample=1000, silhouette_sample=500, seeds=1, gmm_n_init=1, processes=1
    )
    metrics, arrays = clustering.score_head(
        test_codes, test_labels, params=params, seed=0, train_codes=train_codes
    )
    assert metrics["head_accuracy"] >= 0.99
    assert metrics["head_nmi"] >= 0.97
    assert metrics["head_inductive_codes"] == 1000
    rows = clustering.head.inductive_sample(np.arange(1500), 1000, 0)
    assert np.array_equal(arrays["train_codes"], train_codes[rows])
    partition = arrays["train_partition"]
    assert latent.clustering_accuracy(train_labels[rows], partition) >= 0.99
    assert arrays["embedding"].shape == (1200, 10)
    assert sorted(np.unique(arrays["assignments"])) == list(range(10))
    assert sum(metrics["head_cluster_sizes"]) == 1200


def test_unlabeled_npz_runs_through_the_head(tmp_path):
    """An npz without y: fetch + preprocess keep y absent, the head reports label-free figures."""
    points, _ = _blobs(900, seed=3)
    # Blobs as 'images' (N, 5, 10) in [0, 1]: the head does not care where codes come from.
    scaled = (points - points.min()) / (points.max() - points.min())
    np.savez(tmp_path / "mine.npz", x=scaled.reshape(900, 5, 10))
    data.fetch("npz", tmp_path / "raw", npz_path=tmp_path / "mine.npz")
    data.preprocess(tmp_path / "raw", tmp_path / "processed", val_fraction=0.1, seed=0)
    x_test, y_test = data.load_split(tmp_path / "processed", "test")
    x_train, _ = data.load_split(tmp_path / "processed", "train")
    assert y_test is None
    params = clustering.HeadParams(
        inductive_subsample=300, silhouette_sample=200, seeds=1, gmm_n_init=1, processes=1
    )
    metrics, arrays = clustering.score_head(
        x_test, None, params=params, seed=0, train_codes=x_train
    )
    assert not any(key.endswith(("accuracy", "nmi", "ari")) for key in metrics)
    assert metrics["labelled"] is False
    assert metrics["head_silhouette"] > 0.5  # the blobs are found without labels
    assert sum(metrics["head_cluster_sizes"]) == len(x_test)
    assert len(arrays["train_partition"]) == 300
    rows = clustering_report.head_rows(["mine"], {"mine": metrics}, {"mine": None})
    section = clustering_report.render_head_section(
        rows, None, None, clustering_report.head_quality(rows)
    )
    assert "No labels" in section and "silhouette" in section


def test_head_params_reject_bad_values():
    with pytest.raises(ConfigError, match="cluster.min_dist"):
        clustering.HeadParams(min_dist=-0.1)
    with pytest.raises(ConfigError, match="covariance_type"):
        clustering.HeadParams(covariance_type="banana")


def test_seed_summary_is_mean_and_sample_std():
    summary = clustering.summarise_seeds(
        [{"head_accuracy": 0.9}, {"head_accuracy": 0.95}, {"head_accuracy": 1.0}],
        ["head_accuracy"],
    )
    assert summary["head_accuracy"]["mean"] == pytest.approx(0.95)
    assert summary["head_accuracy"]["std"] == pytest.approx(0.05)


def test_head_over_seeds_reports_the_consensus_and_the_spread_of_independent_fits(digits_small):
    """cluster.seeds: heads fitted one by one with seeds s, s+1, ... (each recomputing its
    neighbour graph); the reported partition is their consensus, whatever their order; mean and
    sample std scored with scikit-learn's NMI and ARI; run side by side in two processes, the
    same figures and arrays."""
    from sklearn import metrics as sk

    from autoencoders.clustering import consensus

    codes = digits_small["x_test"].reshape(300, -1)
    labels = digits_small["y_test"]
    params = clustering.HeadParams(
        n_epochs=100, inductive_subsample=0, seeds=3, gmm_n_init=1, processes=1
    )
    metrics, arrays = clustering.score_head(codes, labels, params=params, seed=5)
    metrics_copy = dict(metrics)
    heads = [clustering.fit_head(codes, seed=seed, n_epochs=100) for seed in (5, 6, 7)]
    fits = [head.assignments for head in heads]
    agreed = consensus.consensus(fits, 10, 5)
    assert np.array_equal(arrays["assignments"], agreed)
    assert sk.adjusted_rand_score(consensus.consensus(fits[::-1], 10, 5), agreed) == 1.0
    accuracy = [latent.clustering_accuracy(labels, fit) for fit in fits]
    nmi = [sk.normalized_mutual_info_score(labels, fit) for fit in fits]
    ari = [sk.adjusted_rand_score(labels, fit) for fit in fits]
    assert metrics["head_seeds"]["seeds"] == [5, 6, 7]
    assert metrics["head_seeds"]["head_accuracy"] == pytest.approx(accuracy)
    assert len(metrics["head_seeds"]["modularity"]) == 3
    assert metrics["head_seeds"]["ari_with_consensus"] == pytest.approx(
        [sk.adjusted_rand_score(agreed, fit) for fit in fits], abs=1e-6
    )
    for key, values in (("accuracy", accuracy), ("nmi", nmi), ("ari", ari)):
        assert metrics[f"head_{key}_mean"] == pytest.approx(np.mean(values))
        assert metrics[f"head_{key}_std"] == pytest.approx(np.std(values, ddof=1))
    assert metrics["head_accuracy"] == pytest.approx(latent.clustering_accuracy(labels, agreed))
    # The same fits side by side in two processes (the parent and a spawned one): same figures.
    parallel = dataclasses.replace(params, processes=2)
    side_by_side, parallel_arrays = clustering.score_head(codes, labels, params=parallel, seed=5)
    side_by_side.pop("head_seconds"), metrics_copy.pop("head_seconds")
    assert side_by_side == metrics_copy
    assert np.array_equal(parallel_arrays["assignments"], arrays["assignments"])
    assert np.array_equal(parallel_arrays["embedding"], arrays["embedding"])
    rows = clustering_report.head_rows(["pixels8"], {"pixels8": metrics | {"code_size": 64}}, {})
    quality = clustering_report.head_quality(rows)
    bar = np.mean(accuracy) - np.std(accuracy, ddof=1) >= 0.90
    assert (quality["below_0.90_mean_minus_std_with_code_ge_10"] == []) == bar
    section = clustering_report.render_head_section(rows, None, None, quality)
    assert f"{np.mean(accuracy):.3f} ± {np.std(accuracy, ddof=1):.3f}" in section


def test_consensus_outvotes_a_minority_solution_whatever_the_names():
    """Five partitions of 10 groups of 50: three right (each spelled with other names), two
    that merge groups 0 and 1 and split group 2; the consensus is the right one, as the
    co-association says (groups 0 and 1 apart in 3 of 5, group 2 together in 3 of 5)."""
    from sklearn import metrics as sk

    from autoencoders.clustering import consensus

    truth = np.repeat(np.arange(10), 50)
    rng = np.random.default_rng(0)
    right = [rng.permutation(10)[truth] for _ in range(3)]
    wrong = truth.copy()
    wrong[truth == 1] = 0
    wrong[(truth == 2) & (np.arange(500) % 2 == 0)] = 1
    partitions = [right[0], wrong, right[1], rng.permutation(10)[wrong], right[2]]
    agreed = consensus.consensus(partitions, 10, seed=0)
    assert sk.adjusted_rand_score(truth, agreed) == 1.0
    assert list(np.bincount(agreed)) == [50] * 10
    assert consensus.agreement(partitions, agreed) == pytest.approx(
        [1.0, sk.adjusted_rand_score(truth, wrong)] * 2 + [1.0]
    )
    with pytest.raises(ValueError, match="consensus needs"):
        consensus.consensus([truth[:5]], 10, seed=0)


def test_modularity_on_the_codes_neighbour_graph_matches_networkx():
    import networkx

    from autoencoders.clustering import consensus

    codes, labels = _blobs(300, seed=4)
    graph = manifold.Neighbours.of(codes, "euclidean", 6)
    reference = networkx.Graph()
    reference.add_nodes_from(range(300))
    reference.add_edges_from(
        (row, int(other)) for row, near in enumerate(graph.indices) for other in near[1:]
    )
    shuffled = np.random.default_rng(0).permutation(labels)
    for partition in (labels, shuffled):
        communities = [set(np.flatnonzero(partition == c).tolist()) for c in range(10)]
        expected = networkx.community.modularity(reference, communities)
        assert consensus.modularity(graph.indices, partition, 10) == pytest.approx(expected)
    # The blobs' own partition is far more modular than a shuffled one, and is the one kept.
    assert consensus.modularity(graph.indices, labels, 10) > 0.8
    by_modularity = clustering.HeadParams(partition="modularity")
    kept = clustering.head.one_partition([shuffled, labels], graph, by_modularity, 0)
    assert np.array_equal(kept, labels)
    with pytest.raises(ConfigError, match="cluster.partition"):
        clustering.HeadParams(partition="vote")


def test_tasks_spread_over_processes_come_back_in_order_and_raise_there():
    from autoencoders import threads

    arguments = [(2, 10), (3, 4), (5, 3), (7, 2), (10, 1)]
    assert threads.spread_over_processes(pow, arguments, 2) == [2**10, 3**4, 5**3, 7**2, 10]
    assert threads.spread_over_processes(pow, arguments, 1) == [2**10, 3**4, 5**3, 7**2, 10]
    with pytest.raises(ZeroDivisionError):
        threads.spread_over_processes(divmod, [(1, 0), (4, 2)], 2)


# The head in a fresh process: its metrics and arrays, as bytes, for the comparison below.
HEAD_IN_A_PROCESS = """
import json, sys
import numpy as np
from autoencoders import clustering
codes = np.load(sys.argv[1])
params = clustering.HeadParams(
    n_epochs=100, inductive_subsample=300, silhouette_sample=100, seeds=1, gmm_n_init=1,
    processes=1,
)
metrics, arrays = clustering.score_head(
    codes[:300], np.load(sys.argv[2]), params=params, seed=3, train_codes=codes[300:]
)
metrics.pop("head_seconds")
metrics["train_partition_sizes"] = np.bincount(arrays.pop("train_partition")).tolist()
arrays.pop("train_codes")
with open(sys.argv[3], "w") as handle:
    json.dump(metrics, handle)
np.savez(sys.argv[4], **arrays)
"""


def _head_bytes(tmp_path, name: str, codes, labels, environment) -> tuple[bytes, dict]:
    import json
    import os
    import subprocess
    import sys

    np.save(tmp_path / "codes.npy", codes)
    np.save(tmp_path / "labels.npy", labels)
    env = {**os.environ, **environment}
    metrics, arrays = tmp_path / f"{name}.json", tmp_path / f"{name}.npz"
    subprocess.run(
        [sys.executable, "-c", HEAD_IN_A_PROCESS, tmp_path / "codes.npy", tmp_path / "labels.npy"]
        + [metrics, arrays],
        env=env,
        check=True,
        timeout=600,
    )
    with np.load(arrays) as stored:
        raw = b"".join(np.ascontiguousarray(stored[key]).tobytes() for key in sorted(stored))
    return metrics.read_bytes() + raw, json.loads(metrics.read_text())


@pytest.mark.slow
def test_head_gives_the_same_bytes_across_thread_counts_and_cpu_targets(tmp_path, digits_small):
    """Two processes, 1 vs 2 threads everywhere and numba asked for two CPU targets: same bytes.

    numba's host code (vector width, FMA) reassociates UMAP's fastmath layout loops differently
    per CPU family; the head pins one target per instruction-set level, so neither process's
    request (the baseline, the host's own) changes anything, nor do the thread counts (BLAS,
    OpenMP, numba).
    """
    import platform

    from numba.core import codegen

    # 300 test digits the head is fitted on, then 300 training digits it is applied to.
    codes = np.concatenate([digits_small["x_test"], digits_small["x_train"]]).reshape(600, -1)
    labels = digits_small["y_test"]
    threads = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    one = {name: "1" for name in threads} | {"NUMBA_CPU_NAME": "generic"}
    two = {name: "2" for name in threads} | {"NUMBA_CPU_NAME": codegen.ll.get_host_cpu_name()}
    if platform.machine().lower() in ("x86_64", "amd64"):
        two["OPENBLAS_CORETYPE"] = "Prescott"  # another BLAS kernel set (SSE3: any x86-64)
    first, metrics = _head_bytes(tmp_path, "one", codes, labels, one)
    second, _ = _head_bytes(tmp_path, "two", codes, labels, two)
    assert first == second
    assert metrics["head_accuracy"] > 0.5  # real digits found (chance ~0.1)
    sizes = metrics["head_cluster_sizes"]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == 300
    inductive = metrics["train_partition_sizes"]
    assert inductive == sorted(inductive, reverse=True) and sum(inductive) == 300


MIXTURES_IN_A_PROCESS = """
import sys
import numpy as np
from autoencoders.anomaly.densities import GaussianMixtureDensity
from autoencoders import manifold
points = np.load(sys.argv[1])
mixture, components = manifold.fit_mixture(points, 10, "full", 2, 0)
density = GaussianMixtureDensity.fit(points, n_components=10, seed=0)
np.savez(sys.argv[2], means=mixture.means_, components=components, density=density.means)
"""


@pytest.mark.slow
def test_mixtures_give_the_same_bytes_whatever_the_blas_threads(tmp_path):
    """10,000 points of 10 numbers, as the head's manifold holds: enough for OpenBLAS to split
    the mixture's products over its threads (the 300 digits above are not), which round
    differently per thread count unless ``threads.small_blas`` keeps them to one."""
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 10)) * 3
    points = centres[rng.integers(0, 10, 10000)] + rng.normal(size=(10000, 10))
    np.save(tmp_path / "points.npy", points.astype(np.float32))
    stored = []
    for threads in ("1", "2"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        out = tmp_path / f"mixtures-{threads}.npz"
        subprocess.run(
            [sys.executable, "-c", MIXTURES_IN_A_PROCESS, tmp_path / "points.npy", out],
            env=env,
            check=True,
            timeout=300,
        )
        with np.load(out) as arrays:
            stored.append({key: arrays[key].tobytes() for key in arrays})
    assert stored[0] == stored[1]


def test_openblas_runs_the_avx2_kernels_on_every_avx2_cpu():
    """``autoencoders.runtime``, imported before numpy, pins OpenBLAS's kernels to Haswell's
    (AVX2 + FMA) on a CPU that has them: an AVX-512 CPU's own kernels round the mixtures'
    products otherwise. OpenBLAS itself reports which kernels it loaded (threadpoolctl's
    ``architecture``)."""
    import os
    import subprocess
    import sys

    from autoencoders import runtime

    if not {"avx2", "fma"} <= runtime._cpu_flags():
        pytest.skip("this CPU has no AVX2 + FMA: OpenBLAS keeps its own choice")
    script = (
        "import autoencoders.runtime, numpy, scipy.linalg, threadpoolctl, os; "
        "print(os.environ['OPENBLAS_CORETYPE'], "
        "*sorted({i['architecture'] for i in threadpoolctl.threadpool_info() "
        "if i['internal_api'] == 'openblas'}))"
    )
    env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_CORETYPE"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["Haswell", "Haswell"]


NUMPY_AGAINST_LIBM = """
import autoencoders.runtime, math, numpy as np
x = np.random.default_rng(0).normal(size=20000) * 5
print(np.array_equal(np.exp(x), [math.exp(v) for v in x]),
      np.array_equal(np.log(np.abs(x) + 1e-3), [math.log(abs(v) + 1e-3) for v in x]))
"""


def test_numpy_exp_and_log_round_as_the_c_library_on_every_cpu():
    """``autoencoders.runtime``, imported before numpy, turns off numpy's AVX-512 loops: its
    float64 exp and log (the mixtures' E-step) then agree bit for bit with the C library's
    ``math.exp`` and ``math.log``, as on any AVX2 CPU; without it an AVX-512 CPU's differ
    (docs/determinism.md)."""
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key != "NPY_DISABLE_CPU_FEATURES"}
    result = subprocess.run(
        [sys.executable, "-c", NUMPY_AGAINST_LIBM],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == ["True", "True"]


def test_a_partition_has_one_spelling_whatever_its_cluster_names():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=200)
    assignments = (labels + (rng.random(200) < 0.2)) % 4
    renamed = np.array([2, 0, 3, 1])[assignments]
    relabel = latent.canonical_labels(assignments, 4)
    assert np.array_equal(relabel[assignments], latent.canonical_labels(renamed, 4)[renamed])
    canonical = relabel[assignments]
    sizes = np.bincount(canonical)
    assert list(sizes) == sorted(sizes, reverse=True)  # label 0 is the largest cluster
    assert latent.label_scores(labels, assignments, "") == latent.label_scores(labels, renamed, "")
    embedding = rng.normal(size=(200, 2))
    free = clustering.label_free_scores(embedding, renamed, 0, 100, "")
    assert free == clustering.label_free_scores(embedding, assignments, 0, 100, "")
    assert free["cluster_sizes"] == sorted(free["cluster_sizes"], reverse=True)


def test_exact_neighbours_rank_by_recomputed_distance_then_index():
    # Points 1 and 2 are equally far from point 0: the lower index comes first.
    points = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 3.0]], dtype=np.float32)
    index = manifold.ExactNeighbours(points)
    indices, distances = index.graph(3)
    assert indices[0].tolist() == [0, 1, 2]
    np.testing.assert_array_equal(distances[0], np.array([0.0, 1.0, 1.0], dtype=np.float32))
    query_indices, query_distances = index.query(np.array([[0.0, 2.9]], np.float32), k=2)
    assert query_indices.tolist() == [[3, 0]]
    np.testing.assert_allclose(query_distances, [[0.1, 2.9]], rtol=1e-6)


# --------------------------------------------------------------------------- IDEC formulas

# Three 1-d codes z = 0, 1, 3 and two centres mu = 0, 2, alpha = 1:
# kernel 1 / (1 + d^2): z=0 -> (1, 1/5), z=1 -> (1/2, 1/2), z=3 -> (1/10, 1/2); rows normalised.
HAND_Q = np.array([[5 / 6, 1 / 6], [1 / 2, 1 / 2], [1 / 6, 5 / 6]])
# f = column sums = (3/2, 3/2); p ~ q^2 / f, rows normalised: (25/36, 1/36) -> (25/26, 1/26).
HAND_P = np.array([[25 / 26, 1 / 26], [1 / 2, 1 / 2], [1 / 26, 25 / 26]])
CODES = np.array([[0.0], [1.0], [3.0]])
CENTRES = np.array([[0.0], [2.0]])


def test_soft_assignment_and_target_match_the_hand_computed_example():
    q = idec.soft_assignment(CODES, CENTRES, alpha=1.0)
    np.testing.assert_allclose(q, HAND_Q, rtol=1e-12)
    np.testing.assert_allclose(idec.target_distribution(q), HAND_P, rtol=1e-12)


def test_clustering_layer_and_kl_match_numpy():
    layer = idec.ClusteringLayer(2, alpha=1.0)
    layer.build((None, 1))
    layer.centres.assign(CENTRES.astype(np.float32))
    q = np.asarray(layer(CODES.astype(np.float32)))
    np.testing.assert_allclose(q, HAND_Q, atol=1e-6)
    expected = np.mean(np.sum(HAND_P * np.log(HAND_P / HAND_Q), axis=1))
    kl = float(idec.kl_divergence(HAND_P.astype(np.float32), q))
    assert kl == pytest.approx(expected, rel=1e-5)
    # alpha changes the tails: the formula, not a hard-coded Cauchy kernel.
    wide = idec.ClusteringLayer(2, alpha=3.0)
    wide.build((None, 1))
    wide.centres.assign(CENTRES.astype(np.float32))
    np.testing.assert_allclose(
        np.asarray(wide(CODES.astype(np.float32))),
        idec.soft_assignment(CODES, CENTRES, alpha=3.0),
        atol=1e-6,
    )


def test_clustering_objective_config_is_checked():
    config = models.VariantConfig.from_params("idec", IDEC_BLOCK)
    assert config.objective_name == "clustering"
    with pytest.raises(ConfigError, match="objective.tol"):
        models.VariantConfig.from_params(
            "idec", {**IDEC_BLOCK, "objective": {"name": "clustering", "tol": 1.5}}
        )
    with pytest.raises(ConfigError, match="unknown key"):
        models.VariantConfig.from_params(
            "idec", {**IDEC_BLOCK, "objective": {"name": "clustering", "k": 3}}
        )


# --------------------------------------------------------------------------- export, inference


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((40, *IMAGE_SHAPE), dtype=np.float32)


@pytest.fixture(scope="module")
def idec_export(tmp_path_factory, images) -> dict:
    keras.utils.set_random_seed(0)
    config = models.VariantConfig.from_params("idec", IDEC_BLOCK)
    model = models.build_autoencoder(config, IMAGE_SHAPE)
    codes = model.encode(images)
    model.clusters.centres.assign(codes[:4])  # distinct centres: a non-trivial Q
    directory = tmp_path_factory.mktemp("exports") / "idec"
    card = export.export_models(
        model.encoder,
        model.decoder,
        directory,
        variant="idec",
        opset=17,
        tolerance=1e-5,
        parity_images=images,
        parity_batch_sizes=(1, 7),
        clusters=model.assigner,
    )
    return {"dir": directory, "model": model, "card": card}


def test_clusters_onnx_matches_keras_within_tolerance(idec_export, images):
    card = idec_export["card"]
    assert card["files"]["clusters"]["output"]["name"] == "probabilities"
    assert card["parity"]["clusters"]["scaled_diff"] <= 1e-5
    assert "clusters" in export.parity_metrics(card)
    clusterer = inference.Clusterer(idec_export["dir"])
    assignments, probabilities = clusterer.cluster(images)
    expected = idec_export["model"].assign(images)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(assignments, expected.argmax(axis=1))
    assert clusterer.n_clusters == 4
    # uint8 and channel-less layouts are accepted as by the Encoder; one image gives a scalar.
    as_uint8 = np.round(images[:, :, :, 0] * 255).astype(np.uint8)
    assert clusterer.cluster(as_uint8)[0].shape == (40,)
    single, single_probabilities = clusterer.cluster(images[0])
    assert np.ndim(single) == 0 and single_probabilities.shape == (4,)


BAD_IMAGES = [
    lambda x: x[None],  # rank 5
    lambda x: x.reshape(-1),  # rank 1
    lambda x: x[:, :6, :6],  # size
    lambda x: np.concatenate([x, x], axis=-1),  # channels
    lambda x: np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x),  # NaN
    lambda x: x + 0.5,  # float over 1
    lambda x: x - 0.5,  # negative
    lambda x: x[:0],  # empty
    lambda x: (x * 255).astype(np.int64),  # int64
]


@pytest.mark.parametrize("make_input", BAD_IMAGES)
def test_cluster_rejects_the_same_bad_arrays_as_encode(idec_export, images, make_input):
    encoder = inference.Encoder(idec_export["dir"])
    clusterer = inference.Clusterer(idec_export["dir"])
    bad = make_input(images)
    with pytest.raises(inference.InferenceInputError) as from_encode:
        encoder.encode(bad)
    with pytest.raises(inference.InferenceInputError) as from_cluster:
        clusterer.cluster(bad)
    # The same check, the same words (only the model file's name differs).
    assert str(from_cluster.value).replace("clusters.onnx", "encoder.onnx") == str(
        from_encode.value
    )


def test_cli_cluster_writes_assignments_and_probabilities(idec_export, images, tmp_path):
    np.save(tmp_path / "images.npy", np.round(images * 255).astype(np.uint8))
    output = tmp_path / "clusters.npz"
    code = cli.main(
        [
            "cluster",
            "--model",
            str(idec_export["dir"]),
            "--input",
            str(tmp_path / "images.npy"),
            "--output",
            str(output),
        ]
    )
    assert code == 0
    with np.load(output) as result:
        assert result["assignments"].shape == (40,)
        assert result["probabilities"].shape == (40, 4)
        assert np.array_equal(result["assignments"], result["probabilities"].argmax(axis=1))
    np.save(tmp_path / "bad.npy", images - 0.5)
    assert cli.main(["cluster", "--model", str(idec_export["dir"]), "--input",
                     str(tmp_path / "bad.npy"), "--output", str(output)]) == 2  # fmt: skip


def test_onnx_scoring_of_an_idec_export(idec_export, images):
    assignments, _ = inference.Clusterer(idec_export["dir"]).cluster(images)
    scored = export_stage.score_clusters_onnx(idec_export["dir"], images, assignments)
    assert scored["cluster_accuracy"] == 1.0 and scored["nmi"] == pytest.approx(1.0)
    unlabeled = export_stage.score_clusters_onnx(idec_export["dir"], images, None)
    assert "cluster_accuracy" not in unlabeled and sum(unlabeled["cluster_sizes"]) == 40


def test_save_load_round_trip_keeps_the_centres(idec_export, images, tmp_path):
    model = idec_export["model"]
    models.save_autoencoder(model, tmp_path / "idec")
    loaded = models.load_autoencoder(tmp_path / "idec")
    np.testing.assert_array_equal(
        np.asarray(loaded.clusters.centres), np.asarray(model.clusters.centres)
    )
    np.testing.assert_allclose(loaded.assign(images), model.assign(images), atol=1e-7)


# --------------------------------------------------------------------------- IDEC training


@pytest.mark.slow
@pytest.mark.parametrize(
    ("init", "augment"), [("kmeans", 0.0), ("manifold", 0.0), ("manifold", 0.1)]
)
def test_idec_training_moves_centres_and_sharpens_assignments(digits_small, init, augment):
    from autoencoders import evaluation
    from autoencoders.training import loop

    block = {
        "architecture": {"name": "dense", "latent_dim": 10, "hidden_units": [64]},
        "objective": {
            "name": "clustering",
            "n_clusters": 10,
            "update_interval": 20,
            "max_iterations": 200,
            "init": init,
            "init_subsample": 200,
            "augment_shift": augment,  # DEC-DA's batches: shifted and rotated
            "augment_rotation": 100 * augment,
        },
    }
    config = models.VariantConfig.from_params("idec", block)
    model, _, _ = loop.train_variant(
        config,
        digits_small["x_train"],
        digits_small["x_val"],
        epochs=30,
        batch_size=32,
        learning_rate=3e-3,
        seed=0,
        patience=5,
        verbose=False,
    )
    before = model.assign(digits_small["x_test"])  # random centres: nearly uniform
    info = model.fit_clusters(digits_small["x_train"], batch_size=32, seed=0, verbose=False)
    after = model.assign(digits_small["x_test"])
    assert info["iterations"] >= 20 and info["stopped_by"] in ("tol", "max_iterations")
    assert info["init"] == init
    assert after.max(axis=1).mean() > before.max(axis=1).mean()
    np.testing.assert_allclose(after.sum(axis=1), 1.0, atol=1e-5)
    accuracy = evaluation.clustering_accuracy(digits_small["y_test"], after.argmax(axis=1))
    assert accuracy > 0.5  # chance is ~0.1; labels were never used


def test_seed_spread_is_the_sample_mean_and_deviation():
    import statistics

    from autoencoders import config
    from autoencoders.benchmarks import seeds

    results = [{"mse": 0.01, "own_accuracy": 0.9}, {"mse": 0.02, "own_accuracy": 0.96}]
    results.append({"mse": 0.03})  # a model without own assignments
    summary = seeds.spread(results)
    assert summary["mse"]["mean"] == pytest.approx(statistics.mean([0.01, 0.02, 0.03]))
    assert summary["mse"]["std"] == pytest.approx(statistics.stdev([0.01, 0.02, 0.03]))
    assert summary["own_accuracy"]["std"] == pytest.approx(statistics.stdev([0.9, 0.96]))
    assert config.parse_seeds("0,1,2") == [0, 1, 2]
    with pytest.raises(config.ConfigError, match="comma-separated integers"):
        config.parse_seeds("0;1")
