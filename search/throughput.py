"""Training speed as the time plan counts it: seconds per image per million MACs, calibrated and measured.

:mod:`search.plan` shares a budget out with it; ``search/tune/calibrate.py`` measures it before a search, and the
screen's trials measure it again (``measured_throughput``) before the plan is made again for what is left.
"""

from __future__ import annotations

from dataclasses import dataclass

EXPORT_IMAGES = 60_000  # an export epoch: every training image


@dataclass(frozen=True)
class Throughput:
    """Training speed, as seconds per image per million MACs (forward MACs of one image)."""

    worker: float  # in one worker process (its share of the threads)
    export: float  # in one process with all the threads (export-best)

    def seconds(self, images: float, mmacs: float, *, export: bool = False) -> float:
        return images * mmacs * (self.export if export else self.worker)

    def export_epoch_s(self, mmacs: float) -> float:
        """Seconds of one export epoch (all ``EXPORT_IMAGES``, all the threads) of a network of ``mmacs``."""
        return self.seconds(EXPORT_IMAGES, mmacs, export=True)

    def effective_mmacs(self, images_per_second: float, mmacs: float) -> float:
        """A trial's size as its measured speed in a worker implies: the million MACs that would train at
        ``images_per_second`` at this worker throughput. MACs are a first-order cost: a net of wide early
        layers spends more per MAC on normalisation and activations than the reference, and is timed here
        as larger. ``mmacs`` when there is no measurement."""
        return 1.0 / (images_per_second * self.worker) if images_per_second > 0 else mmacs


def measured_throughput(samples: list[tuple[float, float]], planned: Throughput) -> Throughput:
    """The workers' throughput as the screen's trials showed it (``samples``: (images/s, million MACs) of
    each, evaluation included), ``planned`` when there is nothing to go by. The export's stays as calibrated:
    it runs alone with all the threads and no evaluation, as its calibration did, while the screen's trials
    ran beside each other (on a CPU, sharing memory bandwidth and caches), which calibration cannot see."""
    per = sorted(1.0 / (ips * mmacs) for ips, mmacs in samples if ips > 0 and mmacs > 0)
    if not per:
        return planned
    worker = per[len(per) // 2]  # the median: a trial that shared its core with a busy neighbour is an outlier
    return Throughput(worker=worker, export=planned.export)
