"""The autoencoder zoo: architectures x objectives, each a registry, joined by a VariantConfig.

    config = VariantConfig.from_params("conv", params["variants"]["conv"])
    model = build_autoencoder(config, input_shape=(28, 28, 1))

See ``architectures`` and ``objectives`` for the registries and ``autoencoder`` for the model.
"""

from autoencoders.config import ConfigError
from autoencoders.models import architectures, idec, objectives
from autoencoders.models.architectures import ARCHITECTURES
from autoencoders.models.autoencoder import (
    SAVED_FILES,
    Autoencoder,
    VariationalAutoencoder,
    build_autoencoder,
    load_autoencoder,
    load_config,
    parameter_count,
    save_autoencoder,
)
from autoencoders.models.objectives import OBJECTIVES
from autoencoders.models.variant import VariantConfig, tunable_fields

__all__ = [
    "ARCHITECTURES",
    "OBJECTIVES",
    "SAVED_FILES",
    "Autoencoder",
    "ConfigError",
    "VariantConfig",
    "VariationalAutoencoder",
    "architectures",
    "idec",
    "build_autoencoder",
    "load_autoencoder",
    "load_config",
    "objectives",
    "parameter_count",
    "save_autoencoder",
    "tunable_fields",
]
