"""Figures recorded on an output artifact as ML Metadata custom properties,
so the lineage queries read them without TensorFlow."""

from typing import Any, Mapping


def record(artifact, props: Mapping[str, Any]) -> None:
  """bool and int as int, float as float, anything else as its string;
  None is left out."""
  for key, value in props.items():
    if value is None:
      continue
    if isinstance(value, (bool, int)):
      artifact.set_int_custom_property(key, int(value))
    elif isinstance(value, float):
      artifact.set_float_custom_property(key, value)
    else:
      artifact.set_string_custom_property(key, str(value))
