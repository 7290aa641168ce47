"""unitscope: explain what every unit of a PyTorch vision network has learned, what it does, and how
much the network depends on it.

    from unitscope.models import create_model
    from unitscope.dissect import dissect
    model = create_model("efficientnet_lite0")

Importing the package defines nothing heavy; each idea lives in its own module or package
(``models``, ``hooks``, ``stats``, ``tally``, ``data``, ``dissect``, ``catalog``, ``report``, ``cli``).
``unitscope.open_run(RUN)`` gives a run folder's tables (pandas DataFrames when pandas is installed);
``unitscope.exemplars(RUN, layer, unit, k)`` a unit's top images, maps and masks as tensors.
"""


def __getattr__(name: str):
    if name == "open_run":  # imported on first use: importing unitscope stays cheap
        from unitscope.results import open_run

        return open_run
    if name == "exemplars":
        from unitscope.describe.exemplars import exemplars

        return exemplars
    raise AttributeError(f"module 'unitscope' has no attribute {name!r}")
