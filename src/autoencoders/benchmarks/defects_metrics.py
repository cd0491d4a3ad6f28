"""The surface-defect benchmark's figures: image-level AUROC, pixel-level AUROC and AUPRO.

AUPRO follows MVTec AD (Bergmann et al., "The MVTec anomaly detection dataset", IJCV 2021):
for every threshold t on the anomaly map, the false-positive rate is the share of the
defect-free pixels (of every image) above t, and the per-region overlap (PRO) is the mean,
over every connected ground-truth region (8-connectivity, in every image), of the share of
that region's pixels above t. AUPRO is the area under PRO(FPR) for FPR in [0, ``limit``]
(0.3 by default, the curve linearly interpolated at the limit) divided by ``limit``, so 1 is
perfect and a random map scores about ``limit`` / 2.
"""

from __future__ import annotations

import numpy as np

from autoencoders import anomaly

FPR_LIMIT = 0.3


def regions(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected ground-truth regions of (N, H, W) bool masks: a label per pixel (0 outside,
    numbered across images) and their count."""
    from scipy import ndimage

    labels = np.zeros(masks.shape, np.int64)
    count = 0
    for index, mask in enumerate(masks):
        found, number = ndimage.label(mask, structure=np.ones((3, 3)))
        labels[index] = np.where(found > 0, found + count, 0)
        count += number
    return labels, count


def aupro(maps: np.ndarray, masks: np.ndarray, limit: float = FPR_LIMIT) -> float:
    """MVTec's AUPRO of anomaly ``maps`` (N, H, W) against ground-truth ``masks`` (N, H, W)
    up to FPR ``limit``, normalised to [0, 1]."""
    maps, masks = np.asarray(maps, np.float64), np.asarray(masks, bool)
    if maps.shape != masks.shape:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} differ.")
    labels, count = regions(masks)
    negatives = int((~masks).sum())
    if count == 0 or negatives == 0:
        raise ValueError("AUPRO needs at least one defect region and one defect-free pixel.")
    areas = np.bincount(labels.ravel(), minlength=count + 1).astype(np.float64)
    order = np.argsort(-maps.ravel(), kind="stable")
    scores, flat_labels = maps.ravel()[order], labels.ravel()[order]
    # Each pixel, taken in descending score, adds 1/negatives to the FPR (defect-free) or
    # 1/(its region's area x count) to the PRO (defect).
    fpr_steps = np.where(flat_labels == 0, 1.0 / negatives, 0.0)
    pro_steps = np.where(flat_labels > 0, 1.0 / (areas[flat_labels] * count), 0.0)
    fpr, pro = np.cumsum(fpr_steps), np.cumsum(pro_steps)
    # One point per distinct threshold: the last pixel of each run of equal scores.
    last = np.r_[scores[1:] != scores[:-1], True]
    fpr, pro = np.r_[0.0, fpr[last]], np.r_[0.0, pro[last]]
    inside = fpr <= limit
    x, y = fpr[inside], pro[inside]
    if x[-1] < limit and len(x) < len(fpr):
        after = len(x)
        share = (limit - fpr[after - 1]) / (fpr[after] - fpr[after - 1])
        x = np.r_[x, limit]
        y = np.r_[y, pro[after - 1] + share * (pro[after] - pro[after - 1])]
    return float(np.trapezoid(y, x) / limit)


def figures(
    image_scores: np.ndarray, labels: np.ndarray, maps: np.ndarray, masks: np.ndarray
) -> dict[str, float]:
    """``image_auroc`` (score against the label), ``pixel_auroc`` (map against the mask, over
    every pixel of every image) and ``aupro``; maps and masks (N, H, W)."""
    return {
        "image_auroc": anomaly.auroc(labels, image_scores),
        "pixel_auroc": anomaly.auroc(np.ravel(masks), np.ravel(maps)),
        "aupro": aupro(maps, masks),
    }


__all__ = ["FPR_LIMIT", "aupro", "figures", "regions"]
