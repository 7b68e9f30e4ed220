"""Build the next epoch's samples in a background thread while the current epoch trains.

Building an epoch (negative sampling, shuffling and batching in numpy, `ncf.fit.pair_sampling`) costs
a fifth to a third of an NCF epoch's steps on CPUs; numpy and the compiled step loop both release
the GIL, so the two overlap, as a `tf.data` pipeline's prefetch would. Each epoch's randomness is its
own (seed, epoch) stream, so a prefetched epoch is the very arrays the source builds on demand:
prefetching changes no trained number, only when the arrays are made.

It holds a second epoch of samples while one trains, so it stops once an epoch's arrays pass
PREFETCH_MAX_BYTES: on the largest sets the memory would cost more than the overlap saves.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from ncf.models.base import Batches, EpochSource

# An epoch of ML-1M's size (5M samples with 4 negatives) is ~80 MiB; ML-20M's is ~1.6 GiB, where a second
# epoch under construction (its sampling temporaries included) would add gigabytes to the peak.
PREFETCH_MAX_BYTES = 512 << 20


def batches_bytes(batches: Batches) -> int:
    """Memory held by one epoch's input arrays."""
    return sum(values.nbytes for values in batches.step_inputs())


class PrefetchedEpochs:
    """An epoch source (same `batches(epoch)`) that starts building epoch N+1 as it hands out epoch N.

    Args:
        source: the stage's epoch source; only the background thread calls it while a build is pending.
        epochs: the stage's epoch count: nothing past the last epoch is built.

    Use it as a context manager: leaving (an early stop, an interruption) drops a pending build.
    """

    def __init__(self, source: EpochSource, epochs: int) -> None:
        self._source = source
        self._epochs = epochs
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="epoch-prefetch")
        self._pending: tuple[int, Future[Batches]] | None = None

    def batches(self, epoch: int) -> Batches:
        """Epoch `epoch`'s inputs (built ahead when it was the one expected); starts on the next."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == epoch:
            batches = pending[1].result()
        else:
            if pending is not None:
                pending[1].result()  # the source is not shared with a running build
            batches = self._source.batches(epoch)
        if epoch + 1 < self._epochs and batches_bytes(batches) <= PREFETCH_MAX_BYTES:
            self._pending = (epoch + 1, self._pool.submit(self._source.batches, epoch + 1))
        return batches

    def __enter__(self) -> PrefetchedEpochs:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._pending = None
        self._pool.shutdown(wait=False, cancel_futures=True)
