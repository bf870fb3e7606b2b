"""Orchestration: PipelineConfig and create_pipeline, plus custom components."""
