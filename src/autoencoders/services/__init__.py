"""What runs beside the pipeline: the team's MLflow server and UI (``tracking_server``), the DVC
remote (``remote``), and serving the exports: a Triton model repository (``triton``) and batch
encoding on a Ray cluster (``batch``, ``shards``)."""
