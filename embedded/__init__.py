"""Embedded services for the local default: an S3 endpoint (moto) and an MLflow server on loopback."""
