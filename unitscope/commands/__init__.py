"""Sub-commands of the ``unitscope`` CLI: each module here defines ``register(subparsers)``."""
