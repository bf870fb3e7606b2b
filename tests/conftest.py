"""Shared fixtures. Importing taxi_demand first sets TF_USE_LEGACY_KERAS."""

import os
import sys
from pathlib import Path

import pytest

import taxi_demand  # noqa: F401  (must precede any TensorFlow import)

REPO = Path(__file__).resolve().parent.parent
TESTDATA = Path(__file__).resolve().parent / "testdata"


@pytest.fixture
def home(tmp_path, monkeypatch):
  """An empty TAXI_DEMAND_HOME for one test."""
  from taxi_demand.home import Home
  root = tmp_path / "home"
  monkeypatch.setenv("TAXI_DEMAND_HOME", str(root))
  return Home(root)
