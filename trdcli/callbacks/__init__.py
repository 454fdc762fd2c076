"""The fastai layer: ``TRDCallback`` and the callbacks beside it (BatchNorm handling, per-stage regularisation)."""
