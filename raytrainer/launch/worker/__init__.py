"""The workers' side of a Ray run: what runs inside each Ray Train worker (one rank).

``loop`` (the function each worker runs: one Runner for its rank) and the hooks it adds:
``report_hook`` (metrics and checkpoints to Ray), ``console_hook`` (rank 0's lines to the
driver's console) and ``stop_hook`` (the driver's stop request; also used by the one process of
``--launcher none``). Nothing is imported here, so that a Runner registering
:class:`~raytrainer.launch.worker.report_hook.RayReportHook` does not import Ray.
"""
