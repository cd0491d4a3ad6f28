"""The N2D clustering head on a variant's codes (UMAP, then a Gaussian mixture) and its scores.

``head`` fits and scores it (on ``autoencoders.manifold``: UMAP pinned, exact neighbours);
``figures`` draws it (its 2-d view); ``stage`` is the ``cluster@V`` stage's work; ``report`` is
the report's section on it. ``head``'s public names are importable from here.
"""

from autoencoders.clustering.head import (
    Head,
    HeadParams,
    fit_head,
    label_free_scores,
    predict_head,
    score_head,
    summarise_seeds,
)

__all__ = [
    "Head",
    "HeadParams",
    "fit_head",
    "label_free_scores",
    "predict_head",
    "score_head",
    "summarise_seeds",
]
