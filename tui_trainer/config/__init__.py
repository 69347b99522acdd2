"""Run configuration (stdlib only: no torch). The CLI's ``--help``, the app's first frame and its as-you-type
validation all use it before torch is imported.

``schema.py`` holds the shape (a dataclass per section; every field's help and rule in its metadata),
``validate.py`` the one validator behind preset files, ``--set section.key=value`` and the app's fields,
``presets.py`` finding, loading and writing presets, ``paths.py`` the user's folders, ``datafiles.py``
whether a preset's data is on this machine, and ``factories.py`` the user's own code as a config names it (the
syntax, the paths, installed entry points, what a run records about it; nothing there imports it).
The names most code needs are re-exported here.
"""

from __future__ import annotations

from tui_trainer.config.paths import user_dir, user_preset_dir, user_state_dir
from tui_trainer.config.presets import (
    builtin_preset_dir,
    list_presets,
    load_preset,
    preset_description,
    resolve_preset,
    save_user_preset,
    to_toml,
)
from tui_trainer.config.schema import (
    ACTIVATIONS,
    ARCHS,
    AUGMENTATIONS,
    DATASETS,
    DEVICES,
    HEADS,
    IMAGE_CHANNELS,
    IMAGE_DATASETS,
    INITS,
    MAX_EXPLICIT_WEIGHTS,
    OFFICIAL_SPLIT_DATASETS,
    OPTIMIZERS,
    PLUGIN_PREFIX,
    REGRESSION_DATASETS,
    SCALINGS,
    SCHEDULES,
    SECTION_TYPES,
    SECTIONS,
    SHUFFLES,
    SPLITS,
    STOP_RULES,
    SYNTHETIC_DATASETS,
    TORCHVISION_ARCHS,
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    RegularizationConfig,
    RunConfig,
    TrainConfig,
)
from tui_trainer.config.validate import (
    apply_overrides,
    check_value,
    field_spec,
    from_dict,
    parse_override,
    replace,
)
from tui_trainer.errors import ConfigError  # re-exported: config is where users look

__all__ = [
    "ACTIVATIONS",
    "ARCHS",
    "AUGMENTATIONS",
    "ConfigError",
    "DATASETS",
    "DEVICES",
    "DataConfig",
    "HEADS",
    "IMAGE_CHANNELS",
    "IMAGE_DATASETS",
    "INITS",
    "MAX_EXPLICIT_WEIGHTS",
    "ModelConfig",
    "OFFICIAL_SPLIT_DATASETS",
    "OPTIMIZERS",
    "OptimizerConfig",
    "PLUGIN_PREFIX",
    "REGRESSION_DATASETS",
    "RegularizationConfig",
    "RunConfig",
    "SCALINGS",
    "SCHEDULES",
    "SECTIONS",
    "SECTION_TYPES",
    "SHUFFLES",
    "SPLITS",
    "STOP_RULES",
    "SYNTHETIC_DATASETS",
    "TORCHVISION_ARCHS",
    "TrainConfig",
    "apply_overrides",
    "builtin_preset_dir",
    "check_value",
    "field_spec",
    "from_dict",
    "list_presets",
    "load_preset",
    "parse_override",
    "preset_description",
    "replace",
    "resolve_preset",
    "save_user_preset",
    "to_toml",
    "user_dir",
    "user_preset_dir",
    "user_state_dir",
]
