# The taxi_demand images: TFX's own 1.16.0 image plus this package, from the
# same lock. Two targets, one build:
#   pipeline (the default): Vertex AI Pipelines, Dataflow workers, Vertex
#     training; each step's command comes from the compiled pipeline.
#     docker build -t REGION-docker.pkg.dev/PROJECT/taxi-demand/pipeline:0.1.0 .
#   job: the 5-minute job as a Cloud Run job; each execution serves the ticks
#     that are due and exits (README: Run on Google Cloud).
#     docker build --target job -t REGION-docker.pkg.dev/PROJECT/taxi-demand/job:0.1.0 .
# tests/test_vertex.py checks that this tag matches tfx== in requirements.lock;
# tests/test_cloud_day.py runs the job's ENTRYPOINT against loopback doubles.
FROM gcr.io/tfx-oss-public/tfx:1.16.0 AS pipeline

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

# The 5-minute job. Where the trips and the models are comes from the Cloud
# Run job's environment: TAXI_DEMAND_WAREHOUSE=bq://PROJECT.DATASET.TABLE and
# TAXI_DEMAND_STORE=gs://BUCKET/PREFIX. The home holds only logs and the
# model cache, so it lives on the execution's scratch disk. Exit 1 when a
# tick failed: the next execution serves it.
FROM pipeline AS job
ENV TAXI_DEMAND_HOME=/tmp/taxi_demand
ENTRYPOINT ["taxi-demand", "predict", "--due"]

# Without --target, the pipeline image, as Vertex AI and Dataflow expect it.
FROM pipeline
