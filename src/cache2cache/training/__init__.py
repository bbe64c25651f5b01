"""Training fusers: recipes, data, the loop, checkpoints and resume, single-process or torchrun.

    from cache2cache.training import load_train_config, run_training
    final = run_training(load_train_config("recipes/tiny.yaml"))          # what `c2c train` does

    from cache2cache.training import TrainConfig, TrainingOptions, OutputOptions, train_fusers
    final = train_fusers(model, conversations, held_out,                  # a C2CModel you built
                         TrainConfig(training=TrainingOptions(max_steps=200, learning_rate=3e-3),
                                     output=OutputOptions(output_dir="runs/demo")))

Modules: `config` (loading a recipe), `schema` (its dataclasses), `checks` (its value and file
checks), `records` (reading chat data), `examples` (conversations -> token ids), `batching`
(examples -> padded batches), `loop` (`train_fusers`, `run_training`), `state` (checkpoints and
resume), `distributed` (torchrun).
The names below are imported lazily (PEP 562): `c2c train --help` reads the recipe schema without
loading the training loop.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "ConfigError": "config",
    "DataOptions": "config",
    "DataSource": "config",
    "ModelOptions": "config",
    "OutputOptions": "config",
    "TrainConfig": "config",
    "TrainingOptions": "config",
    "load_train_config": "config",
    "validate_recipe": "config",
    "ChatDataset": "examples",
    "ExampleEncoder": "examples",
    "TrainingBatch": "batching",
    "TrainingExample": "examples",
    "collate": "batching",
    "load_source": "records",
    "run_training": "loop",
    "train_fusers": "loop",
    "find_latest_checkpoint": "state",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
