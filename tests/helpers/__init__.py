"""Shared test helpers, in one place: tiny models with set weights and planted data.

``tiny_conv`` (a tiny convolutional net), ``planted`` (units planted on colours, for dissection),
``ablate_models`` / ``audit_models`` / ``featvis_models`` / ``gan_models`` / ``serve_model`` (hand-built
nets per analysis, each also loadable as ``tests/helpers/<file>.py:<factory>``), ``report_extras``
(extras for the synthetic run of ``tests/conftest.py``), ``tally_job`` (a tally run as a subprocess,
also under torchrun) and ``run_0.1.0/`` (a run folder written by unitscope 0.1.0).
"""
