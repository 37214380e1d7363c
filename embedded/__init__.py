"""Embedded services for the local default, on loopback: an S3 endpoint (moto) and an MLflow
server (services.py), and a stand-in for the CRM's API (crm_receiver.py)."""
