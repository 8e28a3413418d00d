"""The worker pool of verify: segments scanned in order, in this process or, for big
logs, in worker processes that open the store themselves and read the same snapshot.

Results come back in segment order, with a bounded window of segments running ahead,
so memory stays bounded whatever the log's size.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

from ._store import Store
from ._verify_scan import Segment, scan_segment

__all__ = ["DEFAULT_WORKERS", "Job", "run_segments"]

DEFAULT_WORKERS = 2
"""Worker processes when ``workers`` is not given (logs over two segments only; never
more than the machine's cores)."""
Job = tuple[int, int, int, int]
"""One segment to scan: (start, end, integrated size, chunk)."""


def _start_method() -> str:
    """``fork`` in a single-threaded process (the CLI, a benchmark): workers start at
    once, sharing the imported code. ``spawn`` otherwise (the audit service verifies
    from a thread): forking a process with other threads can copy a lock another
    thread holds and deadlock the child. A forked worker never touches the parent's
    store connections; it opens its own (``_segment_in_worker``)."""
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "spawn"


_worker_store: dict[str, Store] = {}


def _segment_in_worker(url: str, share: str | None, job: Job, sizes: tuple[int, ...]) -> Segment:
    from .log import open_store

    store = _worker_store.get(url)
    if store is None:
        store = _worker_store[url] = open_store(url, create=False)
    s0, s1, integrated_size, chunk = job
    with store.snapshot(share=share):
        return scan_segment(store, s0, s1, integrated_size, chunk, sizes)


def run_segments(
    store: Store,
    url: str | None,
    share: str | None,
    jobs: list[Job],
    sizes_in: Callable[[int, int], tuple[int, ...]],
    n_workers: int,
) -> Iterator[tuple[Job, Segment]]:
    """Scan segments in order; with workers, a bounded window of them runs ahead."""
    if n_workers <= 1 or url is None:
        for job in jobs:
            yield (
                job,
                scan_segment(store, job[0], job[1], job[2], job[3], sizes_in(job[0], job[1])),
            )
        return
    ctx = multiprocessing.get_context(_start_method())
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
        window: deque[tuple[Job, Future[Segment]]] = deque()
        it = iter(jobs)
        head = next(it)
        head_sizes = sizes_in(head[0], head[1])
        for job in it:
            window.append(
                (job, pool.submit(_segment_in_worker, url, share, job, sizes_in(job[0], job[1])))
            )
            if len(window) >= 2 * n_workers:
                break
        # A spawned worker needs about half a second to import before it scans: this
        # process scans the first segment meanwhile, instead of waiting (and with
        # fork, while the pool starts).
        yield head, scan_segment(store, head[0], head[1], head[2], head[3], head_sizes)
        while window:
            job, fut = window.popleft()
            nxt = next(it, None)
            if nxt is not None:
                window.append(
                    (
                        nxt,
                        pool.submit(_segment_in_worker, url, share, nxt, sizes_in(nxt[0], nxt[1])),
                    )
                )
            yield job, fut.result()
