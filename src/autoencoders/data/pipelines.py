"""Input pipelines: what training and tuning read from a processed split.

``fit_arguments`` gives ``model.fit`` its data: for an in-memory array (the npz splits) a
``tf.data`` pipeline of one in-memory tensor (``make_dataset``); for a ``Split`` of uint8 shards
(``data.source: images``) the same pipeline over indices whose batches are read from the
shard files and handed to the model as uint8, which scales them inside its step
(``make_split_dataset``), so memory stays at the prefetched batches. The same seed gives the
same order either way. ``subset`` and ``load_subsets`` give a tuning trial its seeded subsets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from autoencoders.data import splits
from autoencoders.data.splits import Split

# Batches make_split_dataset reads in one call, then splits (``rebatch``): the same batches.
READ_BATCHES = 2
# Reading calls make_split_dataset runs side by side (in order): each row's ``os.preadv``
# releases the GIL for the kernel's copy, so a second call copies while the first loops.
READ_CALLS = 2


def scale_batch(images: Any) -> Any:
    """What the model computes on: uint8 batches (the shards' training input, handed over as
    read) scaled to [0, 1] inside the step with the bits of ``data.to_unit_float`` (numpy's
    float32 ``x / 255``); float images pass through untouched (no op is added to their graph).

    Not a float32 division: TensorFlow's graph optimiser and XLA turn a division by a constant
    into a multiplication by its reciprocal, which rounds 126 of the 256 values differently.
    ``x * (1 / 255)`` in float64, rounded once to float32, is the correctly rounded quotient
    for every uint8 value (tests/test_streaming.py checks all 256, in graph and XLA modes)."""
    import keras
    from keras import ops

    if keras.backend.standardize_dtype(images.dtype) != "uint8":
        return images
    return ops.cast(ops.multiply(ops.cast(images, "float64"), 1.0 / 255.0), "float32")


def make_dataset(
    x: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    noise_std: float = 0.0,
    shuffle_buffer: int = 0,
):
    """A ``tf.data`` pipeline of (input, target) batches: seeded shuffle, gathered, prefetched.

    The images stay one in-memory tensor; each epoch shuffles the *indices* (a full, seeded
    permutation, redrawn every epoch) and gathers whole batches from it. Shuffling and batching
    single 784-float elements instead (``from_tensor_slices(x).shuffle().batch()``) cost more than
    the dense models' training step itself (docs/performance.md).
    ``shuffle_buffer`` > 0 limits the index shuffle to that window (0: the whole split).
    The target is the clean image; with ``noise_std > 0`` the input carries fresh Gaussian noise
    each epoch, clipped to [0, 1] (the denoising objective's noise lives here, not in the model).
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))  # (N, H, W, C)
    indices = _index_batches(int(images.shape[0]), batch_size, shuffle, seed, shuffle_buffer)
    return _finish(indices.map(lambda rows: tf.gather(images, rows)), seed, noise_std)


def make_split_dataset(
    split: Split,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    noise_std: float = 0.0,
    shuffle_buffer: int = 0,
):
    """``make_dataset`` over a Split of uint8 shards: the same seeded index batches, read
    from the shard files as uint8 (``Split.uint8``) ``READ_BATCHES`` batches a
    ``numpy_function`` call, then split into batches again (``rebatch``: the same batches, the
    last one short as before), and handed over as uint8, a quarter of the bytes of float32
    batches, each batch alone (no target: the model takes its input as the target): the model
    scales them inside its compiled step, once (``scale_batch``, the bits of
    ``shards.unit_float``). With ``noise_std > 0`` they are scaled here (``scale_batch``),
    before the noise is added. ``READ_CALLS`` calls read side by side ahead of the training
    step (``prefetch``), their batches kept in order (``deterministic``)."""
    import tensorflow as tf

    shape = (None, *(int(size) for size in split.shape[1:]))

    def gather(rows):
        batch = tf.numpy_function(split.uint8, [rows], tf.uint8, stateful=False)
        return tf.ensure_shape(batch, shape)

    indices = _index_batches(len(split), batch_size, shuffle, seed, shuffle_buffer, READ_BATCHES)
    batches = indices.map(gather, num_parallel_calls=READ_CALLS, deterministic=True)
    batches = batches.rebatch(batch_size)
    # rebatch leaves the count of batches unknown; Keras then stops its epochs early.
    batches = batches.apply(tf.data.experimental.assert_cardinality(-(-len(split) // batch_size)))
    if noise_std > 0:
        batches = batches.map(scale_batch)
    return _finish(batches, seed, noise_std, pairs=False)  # uint8 alone: scaled once, in the step


def _index_batches(
    count: int, batch_size: int, shuffle: bool, seed: int, shuffle_buffer: int, group: int = 1
):
    """Batches of row indices 0..count-1 (``group`` batches in each), a seeded shuffle redrawn
    every epoch if asked."""
    import tensorflow as tf

    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    dataset = tf.data.Dataset.range(count)
    if shuffle:
        window = count if shuffle_buffer <= 0 else min(shuffle_buffer, count)
        dataset = dataset.shuffle(window, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size * group)


def _finish(clean_batches, seed: int, noise_std: float, pairs: bool = True):
    """(input, target) pairs of clean batches: the denoising noise (float32 batches), then
    prefetch. Without noise and ``pairs``, each element is the batch alone: Keras passes no
    target and ``Autoencoder.compute_loss`` takes the input as one, scaling it once."""
    import tensorflow as tf

    dataset = clean_batches
    if noise_std > 0:
        generator = tf.random.Generator.from_seed(seed)

        def add_noise(clean):
            noise = generator.normal(tf.shape(clean), stddev=noise_std)
            return tf.clip_by_value(clean + noise, 0.0, 1.0), clean

        dataset = dataset.map(add_noise)
    elif pairs:
        dataset = dataset.map(lambda clean: (clean, clean))
    # tf.data's model-based autotuning off (prefetch keeps its own buffer tuning): with it on,
    # many conv-family epochs ran at half speed with idle CPUs (docs/performance.md).
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def fit_arguments(
    x: np.ndarray | Split,
    batch_size: int,
    seed: int,
    noise_std: float = 0.0,
    shuffle_buffer: int = 0,
    x_val: np.ndarray | Split | None = None,
) -> dict[str, Any]:
    """``model.fit``'s data arguments for this process's Keras backend: shuffled (input, target)
    batches of ``x`` and, with ``x_val``, unshuffled validation batches.

    TensorFlow: ``make_dataset`` pipelines (seeded; the denoising noise lives there), or
    ``make_split_dataset`` for a Split of shards. An in-memory Split is its array.
    JAX: the arrays themselves, batched by Keras and shuffled with ``np.random`` (seeded by
    ``keras.utils.set_random_seed``): a tf.data pipeline, converted per batch, was far slower
    there (docs/performance.md). The JAX settings exclude noise and shuffle buffers.
    """
    import keras

    x = as_input(x)
    x_val = None if x_val is None else as_input(x_val)
    if keras.backend.backend() == "jax":
        if isinstance(x, Split):  # shards: Keras's PyDataset of batches read from them
            arguments = {"x": split_batches(x, batch_size, shuffle=True, seed=seed)}
            if x_val is not None:
                arguments["validation_data"] = split_batches(_split(x_val), batch_size)
            return arguments
        arguments: dict[str, Any] = {"x": x, "y": x, "batch_size": batch_size, "shuffle": True}
        if x_val is not None:
            arguments.update(validation_data=(x_val, x_val), validation_batch_size=batch_size)
        return arguments
    build = make_split_dataset if isinstance(x, Split) else make_dataset
    arguments = {
        "x": build(
            x,
            batch_size,
            shuffle=True,
            seed=seed,
            noise_std=noise_std,
            shuffle_buffer=shuffle_buffer,
        ),
        "shuffle": False,  # the dataset shuffles itself, seeded
    }
    if x_val is not None:
        # The denoising objective is judged on noisy inputs too: val_loss measures what it learns.
        build = make_split_dataset if isinstance(x_val, Split) else make_dataset
        arguments["validation_data"] = build(
            x_val, batch_size=batch_size, seed=seed + 1, noise_std=noise_std
        )
    return arguments


def _split(x: np.ndarray | Split) -> Split:
    return x if isinstance(x, Split) else Split("val", x=x)


def split_batches(split: Split, batch_size: int, shuffle: bool = False, seed: int = 0) -> Any:
    """A ``keras.utils.PyDataset`` of (x, x) float32 batches of ``split`` (the JAX backend's
    input from shards): a seeded permutation, redrawn from ``seed + epoch`` each epoch."""
    import keras

    class SplitBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.order = self._order()

        def _order(self) -> np.ndarray:
            if not shuffle:
                return np.arange(len(split))
            return np.random.default_rng(seed + self.epoch).permutation(len(split))

        def __len__(self) -> int:
            return -(-len(split) // batch_size)

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            images = split.images(self.order[index * batch_size : (index + 1) * batch_size])
            return images, images

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self.order = self._order()

    return SplitBatches()


def as_input(x: np.ndarray | Split) -> np.ndarray | Split:
    """What training takes: an in-memory Split's array (the npz path, unchanged, same bits);
    a Split of shards stays one (read in batches)."""
    return x.array if isinstance(x, Split) and x.in_memory else x


def subset(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A seeded random subset of ``size`` images (all when size is 0 or >= len(x)), in order."""
    if size <= 0 or size >= len(x):
        return x
    indices = np.sort(np.random.default_rng(seed).choice(len(x), size=size, replace=False))
    return x[indices]


def load_subsets(
    processed_dir: str | Path, train_size: int, val_size: int, seed: int
) -> tuple[np.ndarray | Split, np.ndarray | Split]:
    """Seeded subsets of the processed training and validation images (a tuning trial's data):
    arrays for the npz splits, as before; for shards Splits of the sampled rows, read in
    batches (``Split.sample`` picks the rows ``subset`` picks)."""
    train = splits.open_split(processed_dir, "train").sample(train_size, seed)
    val = splits.open_split(processed_dir, "val").sample(val_size, seed + 1)
    return as_input(train), as_input(val)
