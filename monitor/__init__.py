"""wirewatch service side: configuration, polling, scheduling, the CLI.

``monitor`` never imports the internals of ``workers``: the poller hands work to
workers by enqueueing rq jobs referenced by dotted path (see :mod:`monitor.enqueue`).
Only the CLI, which is the composition root, imports the public surface of ``workers``.
"""

__version__ = "0.1.0"
