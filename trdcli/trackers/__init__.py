"""The tracker layer: where a run's steps, epochs and summary go besides the terminal (``--log-to``).

``interface`` (the ``Tracker`` protocol, ``StepLog``, ``RunSummary``, names and run groups),
``callback`` (``TRDTracker``, the fastai callback that feeds them), and one module per tracker:
TensorBoard, W&B, MLflow.
"""
