"""Make-only measurements, not DVC stages: ONNX Runtime latency (``make bench``), training speed
(``make bench-train``) and spreads over seeds (``make train-seeds``, ``make cluster-seeds``)."""
