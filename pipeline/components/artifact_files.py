"""The files a node writes into and reads from its artifacts, wherever they live.

An artifact's URI is a local folder when LocalDagRunner runs the pipeline and
a gs:// address on Vertex AI, so `open()` and `glob` on it work only here:
on Vertex a report written with `open()` lands in the container's own disk
(or fails), and a `glob` of gs:// silently matches nothing. These go through
the project's object store (taxi_demand.objectstore: local files replaced
whole, one upload per object on Cloud Storage) and TensorFlow's file system
for globs of the TFRecord files TFX writes.
"""

from __future__ import annotations

import json
from typing import Any, List, Optional

from taxi_demand import objectstore


def write_bytes(artifact_uri: str, name: str, data: bytes) -> None:
  """Writes `name` inside the artifact, replacing it whole."""
  objectstore.at(artifact_uri).write_bytes(name, data)


def write_json(artifact_uri: str, name: str, body: Any,
               sort_keys: bool = True) -> None:
  """Writes `body` as indented JSON to `name` inside the artifact."""
  write_bytes(artifact_uri, name,
              (json.dumps(body, indent=2, sort_keys=sort_keys) + "\n").encode())


def read_json(artifact_uri: str, name: str) -> Optional[Any]:
  """The JSON in `name` inside the artifact, or None if it has none."""
  data = objectstore.at(artifact_uri).read_bytes(name)
  return None if data is None else json.loads(data)


def split_files(examples_uri: str, split_folder: str) -> List[str]:
  """The files of one split folder of an artifact, sorted."""
  import tensorflow as tf  # noqa: PLC0415
  return sorted(tf.io.gfile.glob(f"{examples_uri.rstrip('/')}/"
                                 f"{split_folder}/*"))
