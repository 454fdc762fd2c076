"""The fastai layer: ``TRDCallback`` (the size of each step), ``ComputeMeter`` (what the steps cost) and the
callbacks beside them (BatchNorm handling, per-stage regularisation, EMA); ``trd_callbacks`` gives a Learner
every callback a TRD fit needs."""
