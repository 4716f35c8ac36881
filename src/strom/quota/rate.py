"""The rate a client quota is measured with: Kafka's sampled Rate over a sliding window.

The window is `quota.window.num` samples of `quota.window.size.seconds` each (11 x 1 s by
default). A recorded amount goes into the current sample; a sample that has seen no event for
a whole window is forgotten. The rate is the sum of the samples over the time they span, where
that span counts at least `samples - 1` full sample windows (so a client's first burst is
spread over ten seconds rather than measured over a millisecond).

Over the quota, the throttle time is what brings the rate back to the quota if nothing more
is recorded: with observed rate O, quota T and window W, X = (O - T) / T * W
(Kafka's QuotaUtils.throttleTime). A record is one addition and at most one sample change:
no per-record (Kafka record) work, only per-request.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Sample:
    start_ms: int
    last_event_ms: int
    value: float = 0.0
    events: int = 0

    def reset(self, now_ms: int) -> None:
        self.start_ms = now_ms
        self.last_event_ms = now_ms
        self.value = 0.0
        self.events = 0


class SampledRate:
    def __init__(self, samples: int, window_ms: int) -> None:
        self.samples = max(1, samples)
        self.window_ms = max(1, window_ms)
        # One more slot than samples: the one being filled overlaps the oldest kept.
        self._samples: list[_Sample] = []
        self._current = 0

    def record(self, value: float, now_ms: int) -> None:
        sample = self._current_sample(now_ms)
        if now_ms - sample.start_ms >= self.window_ms:
            sample = self._advance(now_ms)
        sample.value += value
        sample.events += 1
        sample.last_event_ms = now_ms

    def _current_sample(self, now_ms: int) -> _Sample:
        if not self._samples:
            self._samples.append(_Sample(now_ms, now_ms))
        return self._samples[self._current]

    def _advance(self, now_ms: int) -> _Sample:
        self._current = (self._current + 1) % (self.samples + 1)
        if self._current >= len(self._samples):
            sample = _Sample(now_ms, now_ms)
            self._samples.append(sample)
            return sample
        sample = self._samples[self._current]
        sample.reset(now_ms)
        return sample

    def _measure(self, now_ms: int) -> tuple[float, int]:
        """(sum of the samples, window in ms) in one pass, forgetting samples that saw no
        event for a whole window."""
        if not self._samples:
            self._samples.append(_Sample(now_ms, now_ms))
        expire = self.samples * self.window_ms
        total = 0.0
        oldest = now_ms
        for sample in self._samples:
            if now_ms - sample.last_event_ms >= expire:
                sample.reset(now_ms)
            total += sample.value
            if sample.start_ms < oldest:
                oldest = sample.start_ms
        elapsed = now_ms - oldest
        full = elapsed // self.window_ms
        if full < self.samples - 1:
            elapsed += (self.samples - 1 - full) * self.window_ms
        return total, max(elapsed, 1)

    def window_size_ms(self, now_ms: int) -> int:
        return self._measure(now_ms)[1]

    def total(self, now_ms: int) -> float:
        return self._measure(now_ms)[0]

    def rate(self, now_ms: int) -> float:
        """Per second."""
        total, window = self._measure(now_ms)
        return total / (window / 1000.0)

    def throttle_ms(self, bound: float, now_ms: int) -> int:
        """How long the client must wait for the rate to come down to `bound` (0: within)."""
        total, window = self._measure(now_ms)
        observed = total / (window / 1000.0)
        if observed <= bound:
            return 0
        return round((observed - bound) / bound * window)

    @property
    def last_event_ms(self) -> int:
        return max((s.last_event_ms for s in self._samples), default=0)
