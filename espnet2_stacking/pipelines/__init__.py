"""Pipelines: multi-step jobs built from the layers below (teacher dump, student export,
demo-teacher labels, pretraining and probing)."""
