"""The N2D clustering head on a variant's codes (UMAP, then a Gaussian mixture) and its scores.

``head`` fits and scores it (on ``autoencoders.manifold``: UMAP pinned, exact neighbours);
``figures`` draws it (its 2-d view); ``stage`` is the ``cluster@V`` stage's work; ``report`` is
the report's section on it; ``consensus`` makes one partition of the seeds' partitions;
``deploy`` distils the inductive partition into an exported ``clusters.onnx``. The head's
public names (and ``manifold``'s fit and predict) are importable from here.
"""

from autoencoders.clustering.head import HeadParams, label_free_scores, score_head, summarise_seeds
from autoencoders.manifold import Head, fit_head, predict_head

__all__ = [
    "Head",
    "HeadParams",
    "fit_head",
    "label_free_scores",
    "predict_head",
    "score_head",
    "summarise_seeds",
]
