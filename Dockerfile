# The taxi_demand pipeline image for Vertex AI Pipelines, Dataflow workers and
# Vertex training: TFX's own 1.16.0 image plus this package, from the same lock.
#   docker build -t REGION-docker.pkg.dev/PROJECT/taxi-demand/pipeline:0.1.0 .
# tests/test_vertex.py checks that this tag matches tfx== in requirements.lock.
FROM gcr.io/tfx-oss-public/tfx:1.16.0

# TFX 1.16 components break on Keras 3; TensorFlow reads this once, at import.
ENV TF_USE_LEGACY_KERAS=1

# pipeline/vertex_run.py IMAGE_SOURCE_DIR: the curated schema is read from
# here at run time, so the compiled spec never names the compiling host.
WORKDIR /taxi_demand

# The lock first, alone: the 3 GB dependency layer is rebuilt only when the
# lock changes, not on every code edit. The same pins as `make` installs.
COPY requirements.lock ./
RUN python -m pip install --no-cache-dir -r requirements.lock

# Then the code, installed without resolving anything new.
COPY . .
RUN python -m pip install --no-cache-dir --no-deps . \
    && python -c "import taxi_demand, tfx; assert tfx.__version__ == '1.16.0', tfx.__version__"
