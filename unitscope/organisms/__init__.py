"""Model organisms: small networks trained on the probe world, whose training data we control.

    from unitscope.models import create_model
    net = create_model("world_scenes")            # shipped weights, checked against their sha256
    # unitscope organisms train world_scenes --out runs/organisms   (how the weights were made)

Parts: ``nets`` (architectures), ``tasks`` (batches, losses, held-out metrics), ``recipes`` (which
network, task, world and schedule), ``data`` (rendered training worlds as arrays), ``train`` (the
seeded, resumable loop), ``registry`` (registration in :mod:`unitscope.models`), ``weights/``
(shipped safetensors + metadata JSON).
"""
