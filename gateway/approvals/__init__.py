"""Promotion that needs a second person (GATEWAY_APPROVAL_REQUIRED).

A stage transition or a protected alias change that needs approval is held, not forwarded: the
gate (`gate.py`) records what was judged as a pending approval (`store.py`, Redis) and answers
403 with its id. Another person who may make the change approves or rejects it (`service.py`,
behind the API, the console and the CLI); on approval the gateway makes the request to MLflow
itself (`mlflow_calls.py`) and writes who asked and who approved on the model version.
"""
