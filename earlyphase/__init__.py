"""earlyphase: the science of the early phase of neural network training, at cluster scale.

The science core (specs, data, models, training, masks, IMP, interventions, telemetry) has no
Ray imports; :mod:`earlyphase.tune` runs sweeps of it on Ray Tune.
"""
