"""What a team shares beside the pipeline: the MLflow server and UI, and the DVC remote."""
