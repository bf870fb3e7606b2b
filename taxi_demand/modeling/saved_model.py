"""Loading an exported model for serving: TensorFlow only, no TFX.

The 5-minute job, next-day scoring and the benches load pushed SavedModels
through `load_for_serving`; `trainer.py` (which imports TFX's Trainer
modules) exports them with the signatures named here.
"""

from __future__ import annotations

import os
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from taxi_demand import features as F

PREDICTION_KEY = "predicted_pickups"
RATE_KEY = "predicted_rate"
SERVING_SIGNATURE = "serving_default"
PREDICT_RAW_SIGNATURE = "predict_raw"
# Where TFX's Trainer puts the serving model inside a Model artifact.
SERVING_SUBDIR = "Format-Serving"


def raw_input_dtype(column: str) -> tf.DType:
  """The dtype `predict_raw` takes for a serving column."""
  return tf.int64 if column in F.INT_COLUMNS else tf.float32


def resolve_saved_model(path: Optional[str]) -> Optional[str]:
  """The SavedModel dir for a model artifact URI or a serving dir, if any."""
  if not path:
    return None
  for candidate in (path, os.path.join(path, SERVING_SUBDIR)):
    if tf.io.gfile.exists(os.path.join(candidate, "saved_model.pb")):
      return candidate
  return None


class RawPredictor:
  """Calls a saved model's `predict_raw` signature on numpy columns."""

  def __init__(self, path: str):
    self._loaded = tf.saved_model.load(path)
    self._fn = self._loaded.signatures[PREDICT_RAW_SIGNATURE]
    # A model pushed before a column joined SERVING_COLUMNS (a rollback
    # target) takes fewer inputs: give each model the columns it declares.
    self.columns = tuple(sorted(self._fn.structured_input_signature[1]))

  def __call__(self, columns: Mapping[str, Sequence]) -> Dict[str, np.ndarray]:
    """Predicts for equal-length columns keyed by `features.SERVING_COLUMNS`.

    Extra columns (e.g. the label, or columns newer than the model) are
    ignored.

    Returns:
      {"predicted_pickups": float32[n], "predicted_rate": float32[n]}.
    """
    tensors = {
        c: tf.constant(np.asarray(columns[c],
                                  dtype=raw_input_dtype(c).as_numpy_dtype))
        for c in self.columns}
    return {k: v.numpy() for k, v in self._fn(**tensors).items()}


def load_for_serving(path: str) -> RawPredictor:
  """Loads a serving SavedModel (a Format-Serving dir or a pushed version)."""
  return RawPredictor(resolve_saved_model(path) or path)
