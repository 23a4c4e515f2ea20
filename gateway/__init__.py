"""mlflow-gateway: a security gateway in front of an internal MLflow tracking server."""

__version__ = "0.1.0"
