"""IDEC (Improved Deep Embedded Clustering, Guo et al. 2017) for any architecture of the zoo.

The ``clustering`` objective trains in two phases:

1. pretraining: the autoencoder alone, reconstruction loss only (``train_variant``'s ``fit``);
2. clustering (:meth:`ClusteringAutoencoder.fit_clusters`): cluster centres initialised by
   k-means on the pretrained codes; then, batch by batch, reconstruction +
   ``gamma`` x KL(P || Q), where Q is the Student-t soft assignment of each code to the
   trainable centres and P the sharpened target distribution, recomputed on the whole training
   set every ``update_interval`` batches; training stops when fewer than ``tol`` of the
   assignments changed between two updates (or after ``max_iterations`` batches). With
   ``augment_shift`` / ``augment_rotation`` each batch is randomly shifted and rotated first
   (DEC-DA, Guo et al. 2018); P still comes from the clean images.

    q_ij = (1 + |z_i - mu_j|^2 / alpha)^(-(alpha + 1) / 2) / sum_j' (same for j')
    p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j'),   f_j = sum_i q_ij

``soft_assignment`` and ``target_distribution`` are the same formulas in numpy (the tests check
them against a hand-computed example). The model's ``assigner`` (images -> Q) is what
``exports/<variant>/clusters.onnx`` holds.
"""

from __future__ import annotations

import math
import time
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from autoencoders import data
from autoencoders.models import objectives
from autoencoders.models.autoencoder import Autoencoder, register_model

ASSIGNER_NAME = "clusters"


def soft_assignment(codes: np.ndarray, centres: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Student-t soft assignment Q (N, K) of flat codes (N, D) to centres (K, D), rows sum to 1."""
    codes = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    centres = np.asarray(centres, dtype=np.float64)
    squared = np.sum((codes[:, None, :] - centres[None, :, :]) ** 2, axis=-1)  # (N, K)
    kernel = (1.0 + squared / alpha) ** (-(alpha + 1.0) / 2.0)
    return kernel / kernel.sum(axis=1, keepdims=True)


def target_distribution(q: np.ndarray) -> np.ndarray:
    """DEC's target P: q^2 divided by the cluster frequency f_j = sum_i q_ij, rows renormalised."""
    q = np.asarray(q, dtype=np.float64)
    weight = q**2 / q.sum(axis=0)
    return weight / weight.sum(axis=1, keepdims=True)


@keras.saving.register_keras_serializable(package="autoencoders")
class ClusteringLayer(layers.Layer):
    """Codes (batch, ...) -> Student-t soft assignments (batch, n_clusters) to the centres."""

    def __init__(self, n_clusters: int, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_clusters = int(n_clusters)
        self.alpha = float(alpha)

    def build(self, input_shape: Any) -> None:
        dims = math.prod(int(size) for size in input_shape[1:])
        self.centres = self.add_weight(
            shape=(self.n_clusters, dims), initializer="glorot_uniform", name="centres"
        )

    def call(self, codes: Any) -> Any:
        flat = ops.reshape(codes, (ops.shape(codes)[0], -1))  # (batch, D)
        difference = ops.expand_dims(flat, 1) - ops.expand_dims(self.centres, 0)  # (batch, K, D)
        squared = ops.sum(ops.square(difference), axis=-1)  # (batch, K)
        kernel = ops.power(1.0 + squared / self.alpha, -(self.alpha + 1.0) / 2.0)
        return kernel / ops.sum(kernel, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, int]:
        return (input_shape[0], self.n_clusters)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_clusters": self.n_clusters, "alpha": self.alpha}


def kl_divergence(p: Any, q: Any) -> Any:
    """KL(P || Q) summed over clusters, mean over the batch (a scalar)."""
    p = ops.clip(p, 1e-12, 1.0)
    q = ops.clip(q, 1e-12, 1.0)
    return ops.mean(ops.sum(p * ops.log(p / q), axis=-1))


class _ShuffledBatches:
    """Sorted index batches of a shuffled ``range(count)``, shuffled again whenever fewer than
    a batch remain, so that each image comes once per pass. The first shuffle is drawn on
    construction: the order of draws from the shared ``rng`` is part of the seeded result."""

    def __init__(self, rng: np.random.Generator, count: int, batch_size: int) -> None:
        self._rng, self._count, self._batch_size = rng, count, batch_size
        self._order = rng.permutation(count)
        self._position = 0

    def next(self) -> np.ndarray:
        """The next batch's indices, ascending."""
        if self._position + self._batch_size > self._count:
            self._order, self._position = self._rng.permutation(self._count), 0
        index = np.sort(self._order[self._position : self._position + self._batch_size])
        self._position += self._batch_size
        return index


def _print_change(iteration: int, changed: float, reconstruction: Any, divergence: Any) -> None:
    """The progress line of one target update (the losses are the last batch's)."""
    print(
        f"[idec] iteration {iteration}: {changed:.4f} of assignments "
        f"changed, reconstruction {float(reconstruction):.5f}, "
        f"KL {float(divergence):.5f}",
        flush=True,
    )


def _fit_record(
    iteration: int,
    stopped_by: str,
    changes: list[float],
    losses: tuple[Any, Any],
    init: str,
    init_seconds: float,
    started: float,
) -> dict[str, Any]:
    """What ``fit_clusters`` returns (JSON-ready): where and why it stopped, the share of
    assignments changed at each target update, the last batch's losses, the init and timings."""
    reconstruction, divergence = losses
    return {
        "iterations": int(iteration),
        "stopped_by": stopped_by,
        "assignment_changes": [round(value, 6) for value in changes],
        "final_reconstruction_loss": float(reconstruction),
        "final_kl": float(divergence),
        "init": init,
        "init_seconds": round(init_seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
    }


@register_model("clustering")
class ClusteringAutoencoder(Autoencoder):
    """An autoencoder with trainable cluster centres on its code (the ``clustering`` objective).

    Pretraining is the plain autoencoder (``compute_losses`` is inherited); ``fit_clusters``
    runs IDEC's second phase. ``assigner`` maps images to Q and is exported as clusters.onnx.
    """

    owns_clusters = True

    def __init__(
        self,
        encoder: keras.Model,
        decoder: keras.Model,
        config: Any,
        image_shape: tuple[int, int, int],
        **kwargs: Any,
    ) -> None:
        super().__init__(encoder, decoder, config, image_shape, **kwargs)
        objective = config.objective
        self.clusters = ClusteringLayer(objective.n_clusters, objective.alpha, name="centres")
        self.assigner = keras.Model(
            encoder.input, self.clusters(encoder.output), name=ASSIGNER_NAME
        )
        # Pretraining does not touch the centres; fit_clusters makes them trainable.
        self.clusters.trainable = False

    def assign(self, x: Any, batch_size: int = 1024) -> np.ndarray:
        """Soft assignments Q (N, n_clusters) of images ``x`` (N, H, W, C)."""
        return self._batched(lambda batch: self.assigner(batch, training=False), x, batch_size)

    def fit_clusters(
        self,
        x: np.ndarray,
        *,
        batch_size: int,
        seed: int,
        verbose: bool = True,
    ) -> dict[str, Any]:
        """IDEC's clustering phase on images ``x``; returns what happened (JSON-ready).

        ``init: kmeans`` (the IDEC paper): centres at k-means (``kmeans_n_init`` seeded
        restarts) on the pretrained codes. ``init: manifold``: the N2D head (UMAP + Gaussian
        mixture of ``manifold_n_init`` restarts, ``autoencoders.manifold``) partitions the
        pretrained codes of a seeded subsample of ``init_subsample`` images; the centres start
        at each part's mean code, and the first ``update_interval`` batches (drawn from that
        subsample) take the mixture's posteriors as their target P before Q takes over. Labels
        are never used.
        """
        objective = self.config.objective
        started = time.perf_counter()
        x = np.asarray(x, dtype=np.float32)
        codes = self.encode(x, batch_size=1024).reshape(len(x), -1)
        rng = np.random.default_rng(seed)
        pool, pool_target, previous = self._init_centres(codes, rng, seed)
        init_seconds = time.perf_counter() - started
        distil = objective.update_interval if pool is not None else 0
        step = self._clustering_step(seed)

        batches = _ShuffledBatches(rng, len(x), batch_size)
        target = None
        changes: list[float] = []
        stopped_by = "max_iterations"
        iteration = 0
        reconstruction = divergence = float("nan")
        for iteration in range(objective.max_iterations + 1):
            if iteration >= distil and (iteration - distil) % objective.update_interval == 0:
                q = self.assign(x)
                target = target_distribution(q).astype(np.float32)
                labels = q.argmax(axis=1)
                if previous is not None and iteration > distil:
                    changed = float(np.mean(labels != previous))
                    changes.append(changed)
                    if verbose:
                        _print_change(iteration, changed, reconstruction, divergence)
                    if changed < objective.tol:
                        stopped_by = "tol"
                        break
                previous = labels
            if iteration == objective.max_iterations:
                break
            if iteration < distil:  # the manifold's partition is the target at first
                index = np.sort(rng.choice(len(pool), batch_size, replace=False))
                reconstruction, divergence = step(x[pool[index]], pool_target[index])
                continue
            index = batches.next()
            reconstruction, divergence = step(x[index], target[index])
        losses = (reconstruction, divergence)
        return _fit_record(
            iteration, stopped_by, changes, losses, objective.init, init_seconds, started
        )

    def _init_centres(
        self, codes: np.ndarray, rng: np.random.Generator, seed: int
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Set the centres from the pretrained ``codes`` (N, D) as ``init`` says.

        Returns (pool, pool_target, previous labels): the manifold init's subsample indices and
        its mixture posteriors, or k-means' labels; the others are None.
        """
        objective = self.config.objective
        pool, pool_target, previous = None, None, None
        if objective.init == "manifold":
            from autoencoders import manifold

            pool = np.sort(
                rng.choice(len(codes), min(objective.init_subsample, len(codes)), False)
            )
            head = manifold.fit_head(
                codes[pool],
                n_clusters=objective.n_clusters,
                seed=seed,
                gmm_n_init=objective.manifold_n_init,
            )
            pool_target = head.mixture.predict_proba(head.embedding).astype(np.float32)
            centres = np.stack(
                [
                    codes[pool][head.assignments == j].mean(axis=0)
                    if np.any(head.assignments == j)
                    else codes[pool][rng.integers(len(pool))]
                    for j in range(objective.n_clusters)
                ]
            )
        else:
            from sklearn.cluster import KMeans

            kmeans = KMeans(
                n_clusters=objective.n_clusters, n_init=objective.kmeans_n_init, random_state=seed
            ).fit(codes.astype(np.float64))
            centres = kmeans.cluster_centers_
            previous = kmeans.labels_.astype(np.int64)
        self.clusters.centres.assign(centres.astype(np.float32))
        return pool, pool_target, previous

    def _clustering_step(self, seed: int) -> Any:
        """A compiled step (images, target P) -> (reconstruction, KL) that updates the encoder,
        the decoder and the (now trainable) centres with reconstruction + gamma x KL(P || Q),
        on images randomly shifted and rotated first when the objective says so (``seed``)."""
        objective = self.config.objective
        self.clusters.trainable = True
        optimizer = keras.optimizers.Adam(learning_rate=objective.cluster_learning_rate)
        weights = self.encoder.trainable_weights + self.decoder.trainable_weights
        weights = weights + self.clusters.trainable_weights
        gamma = float(objective.gamma)
        loss_name = objective.loss
        shift, rotation = float(objective.augment_shift), float(objective.augment_rotation)
        import tensorflow as tf  # IDEC's clustering phase runs on TensorFlow only

        generator = tf.random.Generator.from_seed(seed)

        @tf.function(reduce_retracing=True)
        def step(images: Any, target: Any) -> tuple[Any, Any]:
            if shift > 0 or rotation > 0:
                images = data.random_affine(images, generator, shift, rotation)
            with tf.GradientTape() as tape:
                code = self.encoder(images, training=True)
                reconstruction = objectives.reconstruction_loss(
                    images, self.decoder(code, training=True), loss_name
                )
                divergence = kl_divergence(target, self.clusters(code))
                loss = reconstruction + gamma * divergence
            gradients = tape.gradient(loss, weights)
            optimizer.apply_gradients(zip(gradients, weights, strict=True))
            return reconstruction, divergence

        return step


__all__ = [
    "ASSIGNER_NAME",
    "ClusteringAutoencoder",
    "ClusteringLayer",
    "kl_divergence",
    "soft_assignment",
    "target_distribution",
]
