"""Model organisms: small networks trained on the probe world, whose training data we control.

    from unitscope.models import create_model
    net = create_model("world_scenes")            # shipped weights, checked against their sha256
    # unitscope organisms train world_scenes --out runs/organisms   (how the weights were made)

Parts: ``nets`` (every architecture, the generator's too), ``tasks`` (batches, losses, held-out
metrics), ``recipes`` (which network, task, world and schedule), ``data`` (rendered training worlds
as arrays), ``checkpoint`` (modules and optimiser states, sha256), ``train`` (the seeded, resumable
loop; ``gan`` the generator's), ``gan_eval``, ``registry`` (registers the organisms in
:mod:`unitscope.models` and ``world_segmenter`` in :mod:`unitscope.segment` when those registries
first need them), ``weights/`` (shipped safetensors + metadata JSON).
"""
