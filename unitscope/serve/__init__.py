"""The live probe page: drop an image or turn on the webcam, watch every unit of a layer react.

    from unitscope.serve import create_app, Prober
    app = create_app(create_model("efficientnet_lite0"), run="runs/lite0")   # a FastAPI app

Parts: ``probe.py`` (one forward pass -> top classes and a layer's maps), ``runinfo.py`` (what a
run folder's catalog knows about a unit), ``samples.py`` (scikit-image's sample photos),
``app.py`` (routes and the JSON API), ``static/`` (the page; no CDN, no build step).
Needs the ``serve`` extra: ``pip install 'unitscope[serve]'``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "Prober"]


def __getattr__(name: str) -> Any:
    # Lazy: importing unitscope.serve must not need FastAPI until the app is asked for.
    if name == "create_app":
        from unitscope.serve.app import create_app

        return create_app
    if name == "Prober":
        from unitscope.serve.probe import Prober

        return Prober
    raise AttributeError(name)
