"""wirewatch rq job side: dedupe, entities, rules, alerts, delivery.

Jobs are referenced by dotted path from the poller (``workers.jobs.process_batch``)
so the service side never imports this package's internals. The public surface used
by the CLI is re-exported from :mod:`workers.api`.
"""
