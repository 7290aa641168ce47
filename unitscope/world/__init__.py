"""The probe world: procedural scenes (or composed photographs) with dense concept labels, in Broden format.

    from unitscope.world import make_world, render_image
    from unitscope.world.vocab import VOCAB, O, color_labels
    path = make_world("worlds/w224", n=2000, size=224, seed=0)   # a folder BrodenDataset reads
    photo = make_world("worlds/p224", n=5000, style="photo")     # real photographs (Debian packages)
    sample = render_image(seed=0, index=3, size=224)              # arrays only, no files
    (sample.labels["object"] == O["house"]).mean()                 # the share of house pixels

Modules: ``make`` (styles, ``make_world``, ``render_image``), ``vocab`` (the public label vocabulary
and colour naming), ``scenes`` / ``objects`` / ``render`` (the cartoon world), ``photo`` / ``sources``
(the photo styles and their curated sources in ``photo_sources/``), ``cue`` (scene-naming signs for
audits), ``sheet`` (contact sheets).
"""

from unitscope.world.make import GENERATOR_VERSION, STYLES, WorldImage, make_world, render_image, world_style

__all__ = ["GENERATOR_VERSION", "STYLES", "WorldImage", "make_world", "render_image", "world_style"]
