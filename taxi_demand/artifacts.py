"""The custom artifact types the pipeline's nodes output, importable by their type names.

On Vertex the container entrypoint recovers a custom artifact's Python class
from its type name, used as an import path (TFX's Kubeflow V2 compiler
encodes TYPE_NAME as the schema title; `import_class_by_path` imports it).
The ML Metadata type names are `taxi_demand.<Name>` (lineage.contract), so
the classes are reached as `taxi_demand.<Name>`, through the package's lazy
`__getattr__`: importing taxi_demand stays free of TensorFlow, which
tfx.types imports.
"""

from tfx import types

from taxi_demand.lineage import contract


class SkewReport(types.Artifact):
  """A skew check's JSON report; the same MLMD type the CLI records."""

  TYPE_NAME = contract.SKEW_REPORT


class NextDayResult(types.Artifact):
  """How the model serving on a day did on that day's demand."""

  TYPE_NAME = contract.NEXT_DAY_RESULT


# {the name after "taxi_demand." in a TYPE_NAME: its class}
BY_NAME = {cls.TYPE_NAME.rsplit(".", 1)[1]: cls
           for cls in (SkewReport, NextDayResult)}
