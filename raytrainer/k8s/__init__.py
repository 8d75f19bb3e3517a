"""KubeRay deployment: render, size and validate ``RayJob``/``RayCluster`` manifests.

This package owns what ``raytrainer k8s`` prints and what the checked-in manifests under
``k8s/`` must satisfy: the image conventions (``image``), Kubernetes quantities (``quantity``),
the Ray resources pods advertise and whether a run's workers fit (``sizing``), strict validation
against KubeRay's CRD schemas (``schema``), checks beyond the schema (``checks``), rendering
(``render``) and the subcommand (``cli``). It never talks to a Kubernetes API server. Import the
submodules (``raytrainer.k8s.render``, ``raytrainer.k8s.checks``): this file imports nothing, so
that ``raytrainer --help`` stays fast.
"""
