"""taxi_demand: continuously trained taxi demand forecasts on TFX."""

import os as _os

# The one place TF_USE_LEGACY_KERAS is set. TFX 1.16 components break under
# Keras 3 ("`inputs` not connected to `outputs`"), and TensorFlow reads this
# variable once, when it is first imported. Every entry point (the CLI, both
# runners, the notebook, the tests and the TFX executors that load
# `taxi_demand.modeling.*` by dotted path) imports this package before
# TensorFlow, so setting it here is the one deliberate piece of import-time
# work. The container image sets it too (see Dockerfile).
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"


def __getattr__(name: str):
  """`taxi_demand.SkewReport` and the other custom artifact types, loaded
  on first use: their type names are the import paths Vertex's container
  entrypoint recovers them by (see taxi_demand/artifacts.py)."""
  if name[:1].isupper():
    from taxi_demand import artifacts  # noqa: PLC0415
    if name in artifacts.BY_NAME:
      return artifacts.BY_NAME[name]
  raise AttributeError(f"module 'taxi_demand' has no attribute {name!r}")
