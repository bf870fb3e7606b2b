"""Resolver strategies that pick artifacts of earlier spans from MLMD."""

from tfx.types import standard_artifacts

from pipeline.components import resolvers


def stats(artifact_id, span, custom=False):
  a = standard_artifacts.ExampleStatistics()
  a.id = artifact_id
  if custom:  # TFX's query-based driver records span as a custom property
    a.set_int_custom_property("span", span)
  else:
    a.span = span
  return a


def blessing(artifact_id, span, model_id, blessed=1):
  b = standard_artifacts.ModelBlessing()
  b.id = artifact_id
  b.set_int_custom_property("span", span)
  b.set_int_custom_property("blessed", blessed)
  b.set_int_custom_property("current_model_id", model_id)
  return b


def model(artifact_id):
  m = standard_artifacts.Model()
  m.id = artifact_id
  return m


def test_previous_span_ignores_this_span_and_later_reruns():
  strategy = resolvers.PreviousSpanStrategy(span=10)
  got = strategy.resolve_artifacts(None, {"statistics": [
      stats(1, 8), stats(2, 9), stats(3, 10), stats(4, 9, custom=True),
      stats(5, 11)]})
  assert [a.id for a in got["statistics"]] == [4]  # newest of span 9


def test_first_run_has_no_previous_span():
  strategy = resolvers.PreviousSpanStrategy(span=10)
  assert strategy.resolve_artifacts(None, {"statistics": [stats(1, 10)]}) == {
      "statistics": []}


def test_baseline_is_the_newest_model_blessed_before_this_span():
  strategy = resolvers.BlessedModelBeforeSpanStrategy(span=10)
  got = strategy.resolve_artifacts(None, {
      "model": [model(1), model(2), model(3), model(4)],
      "model_blessing": [blessing(11, 8, 1), blessing(12, 9, 2),
                         blessing(13, 9, 3, blessed=0),
                         blessing(14, 10, 4)]})
  assert [m.id for m in got["model"]] == [2]
  assert [b.id for b in got["model_blessing"]] == [12]
