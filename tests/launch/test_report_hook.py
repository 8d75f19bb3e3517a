"""RayReportHook's periodic-report schedule, in one process (no Ray, no collectives)."""
from raytrainer.launch.worker.report_hook import RayReportHook


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _ScheduledHook(RayReportHook):
    """Counts checks and records the iterations (and times) at which it would report."""

    def __init__(self, clock, **kwargs):
        self._clock = clock
        super().__init__(**kwargs)
        self.checks = 0
        self.reports: list[tuple[int, float]] = []

    def _periodic_report_due(self, done, rank):
        before = self._next_check
        due = super()._periodic_report_due(done, rank)
        if done % self.log_interval == 0 and done >= before:
            self.checks += 1
        if due:
            self.reports.append((done, self._clock()))
            self._last_report = self._clock()
        return due


def _run(hook, clock, iters, seconds_per_iter, start_iter=0):
    class _Runner:
        iter = start_iter
        rank = 1  # the planning is every rank's; rank 0 also lists checkpoints to register
        resumed_from = None

    hook.before_train(_Runner)
    for done in range(start_iter + 1, start_iter + iters + 1):
        clock.now += seconds_per_iter(done) if callable(seconds_per_iter) else seconds_per_iter
        hook._periodic_report_due(done, rank=0)


def test_reports_every_interval_with_few_checks():
    clock = _Clock()
    hook = _ScheduledHook(clock, interval_s=10.0, log_interval=10)
    _run(hook, clock, iters=20_000, seconds_per_iter=0.005)  # 100 s of training
    gaps = [b - a for (_, a), (_, b) in zip(hook.reports, hook.reports[1:])]
    assert 9 <= len(hook.reports) <= 10
    assert all(10.0 <= gap <= 11.0 for gap in gaps), gaps
    # A check every 10 iterations would be 2,000 collectives; the plan needs a few per report.
    assert hook.checks <= 7 * len(hook.reports)


def test_each_report_is_at_the_first_interval_boundary_after_it_is_due_at_a_steady_rate():
    clock = _Clock()
    hook = _ScheduledHook(clock, interval_s=1.0, log_interval=10)
    _run(hook, clock, iters=1_000, seconds_per_iter=0.01)
    first_iter, first_time = hook.reports[0]
    assert first_iter % 10 == 0 and 1.0 <= first_time <= 1.1 + 1e-9


def test_after_a_resume_the_rate_is_measured_from_the_resumed_iteration():
    clock = _Clock()
    clock.now = 500.0  # the process ran a while before training (setup, resume)
    hook = _ScheduledHook(clock, interval_s=5.0, log_interval=10)
    _run(hook, clock, iters=2_000, seconds_per_iter=0.01, start_iter=10_000)
    first_iter, first_time = hook.reports[0]
    assert 10_490 <= first_iter <= 10_560, first_iter
    assert first_time - 500.0 <= 5.6


def test_a_slowdown_delays_a_report_by_at_most_the_planned_stretch():
    clock = _Clock()
    hook = _ScheduledHook(clock, interval_s=10.0, log_interval=10)
    # 2 ms/iteration for the first 5,000 iterations, then 4x slower.
    _run(hook, clock, iters=10_000, seconds_per_iter=lambda done: 0.002 if done <= 5000 else 0.008)
    gaps = [b - a for (_, a), (_, b) in zip(hook.reports, hook.reports[1:])]
    # Planned at most interval_s / 4 = 2.5 s ahead at the old rate: 4 x 2.5 s late at worst.
    assert len(hook.reports) >= 4 and max(gaps) <= 10.0 + 4 * 2.5 + 0.1, gaps
