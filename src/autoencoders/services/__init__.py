"""What runs beside the pipeline: the team's MLflow server and UI (``tracking_server``), the DVC
remote (``remote``), and serving the exports: MLflow's model server on the registry and its
``champion`` alias (``serving``), a Triton model repository (``triton``) and batch encoding on a
Ray cluster (``batch``, ``shards``)."""
