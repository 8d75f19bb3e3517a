"""The driver's side of a Ray run: what runs in the process that runs the command.

``run`` (prepare, build and fit the ``TorchTrainer``), ``request`` (a command line's run
request), ``cluster`` and ``reaper`` (which Ray instance, and ending a private one),
``preflight`` and ``paths`` (checks and locations before any worker starts), ``failures``
(what is never retried), ``ray_record`` (Ray's checkpoint bookkeeping), ``console`` and
``summary`` (what the terminal shows). Nothing is imported here: import the module you need.
"""
