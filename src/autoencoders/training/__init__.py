"""Training a variant: Keras' backend per process, the hyperparameters, the training loop.

Import order matters: ``backend`` must choose Keras' backend before anything imports Keras, so
this package imports nothing itself. ``hyperparameters`` layers ``train``, a variant's overrides
and the search's ``best.json``; ``loop`` trains, checks and saves (the ``train@V`` stage's work).
"""
