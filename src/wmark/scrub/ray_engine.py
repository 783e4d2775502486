"""The Ray engine (``--engine ray``, extra ``wmark[ray]``): the scrub's batches run on Ray Data.

The pipeline is the local engine's: the driver (this process) reads every unit, writes its outputs
and commits its journal line (:mod:`wmark.scrub.pipeline`), so outputs, manifest and ``--resume``
are the same whichever engine ran. Only the compute moves: one Ray Data dataset per
:meth:`RayEngine.run` (one per pass of a scrub) maps the
:class:`~wmark.scrub.scrubber.Scrubber` class over the batches with
``map_batches(PackedScrubber, fn_constructor_kwargs=..., batch_size=1, compute=ActorPoolStrategy(size=jobs))``
(one packed batch per call, below):
``jobs`` actors, each building its scrubber (and loading the model) once and keeping it for the
whole pass; ``num_cpus=1`` per actor, and ``num_gpus`` when the scrub runs on CUDA (1 per actor, or
an equal share of the cluster's GPUs where there are fewer than ``jobs``; the actor's device is
then ``cuda``, the GPU Ray gave it). torch runs on one thread per actor, as in the local workers.

How the batches get there: the samples are raw bytes the driver read (never
``ray.data.read_images(size=...)``, whose resize would take the mark away). Ray Data moves *rows*,
and a block per sample costs it more than the detector does, so each batch travels as one row: its
columns written as one Arrow IPC stream (:func:`pack`). The driver puts each packed batch into the
object store and its reference into a queue actor; a single feeding task of the dataset (0 CPUs)
takes them in order and yields them as the dataset's rows, one row per block. The actors run
:class:`PackedScrubber` (``batch_size=1``): it unpacks the row, runs its scrubber on exactly the
batch the local engine would have run and packs the result, so the results come back whole and in
order (``preserve_order``) and the driver checks the ids. At most ``4 * jobs`` batches are in
flight, so the driver reads ahead only that far.

Where Ray runs: if Ray is already initialized in this process (``ray.init(...)`` by the caller),
that cluster is used and left running. Otherwise, with ``RAY_ADDRESS`` set, the engine connects to
that cluster (``ray.init(address=$RAY_ADDRESS)``) and disconnects at the end; without it, it starts
a private instance on this machine (``ray.init(address="local", num_cpus=jobs,
include_dashboard=False, log_to_driver=False)``: never an existing cluster found on the machine,
no dashboard) and shuts it down at the end. Ray's own processes listen on the machine's address
(Ray maps 127.0.0.1 to it), guarded by Ray's token authentication where the Ray version has it
(2.60 does, by default); on an untrusted network start Ray yourself as your site requires, then
scrub. On a cluster, every node needs wmark (and the same Python packages) installed. ``jobs``
actors need ``jobs`` free CPUs (and GPUs with ``--device cuda``) on the cluster, or Ray waits for them.

The same scrubber in your own Ray pipeline (bytes read as they are; ``id_column`` /
``data_column`` name the columns ``read_binary_files`` makes):

    ds = ray.data.read_binary_files("s3://bucket/crawl/", include_paths=True)
    rows = ds.map_batches(Scrubber, fn_constructor_kwargs=dict(key=key, kind="image", action="drop",
                          id_column="path", data_column="bytes", threads=1),
                          batch_size=16, compute=ray.data.ActorPoolStrategy(size=8), num_cpus=1)
"""
from __future__ import annotations

import collections
import inspect
import logging
import os
from typing import Any, Iterable, Iterator

#: at least this Ray (the ``wmark[ray]`` extra)
RAY_REQUIREMENT = "ray[data]>=2.40"
#: batches in flight per actor
IN_FLIGHT_PER_JOB = 4


class _NoProgressNotice(logging.Filter):
    """Drops Ray Data's notice that its progress bars are off (the scrub shows its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Progress bars")


_NOTICE = _NoProgressNotice()


class RayMissing(ImportError, ValueError):
    """Ray is not installed (a ValueError too, so the CLI reports it as a usage error)."""


def import_ray():
    """The ``ray`` module with Ray Data, or :class:`RayMissing` with the install hint (one line)."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayMissing(f"--engine ray needs Ray Data ({RAY_REQUIREMENT}): pip install 'wmark[ray]' "
                         f"({exc})") from None
    return ray


def _feed(batch, queue):
    """The dataset's one feeding task: yield the packed batches the driver queues, in order, until None."""
    import ray

    while True:
        item = queue.get()
        if item is None:
            return
        yield ray.get(item[0])


def pack(columns: dict) -> bytes:
    """A batch (column name -> list of values) as one Arrow IPC stream."""
    import pyarrow as pa

    table = pa.table(columns)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def unpack(blob) -> dict[str, list]:
    """:func:`pack` inverted: column name -> list of values."""
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(blob)).read_all().to_pydict()


class PackedScrubber:
    """The actors' callable class: builds ``cls(**kwargs)`` (a :class:`~wmark.scrub.scrubber.Scrubber`;
    its model loads once per actor) and maps it over packed batches, a table whose ``batch`` column
    holds one :func:`pack`-ed batch per row, returning the packed results in the same form."""

    def __init__(self, cls, **kwargs) -> None:
        self.scrubber = cls(**kwargs)

    def __call__(self, batch):
        import pyarrow as pa

        out = [pack(self.scrubber(unpack(b))) for b in batch.column("batch").to_pylist()]
        return pa.table({"batch": pa.array(out, pa.binary())})


def constructor_kwargs(scrubber) -> dict[str, Any]:
    """The keyword arguments that rebuild ``scrubber`` (its class's ``__init__`` parameters, read
    from the attributes of the same name): what ``fn_constructor_kwargs`` carries to each actor."""
    sig = inspect.signature(type(scrubber).__init__)
    out = {}
    for name, p in sig.parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if hasattr(scrubber, name):
            out[name] = getattr(scrubber, name)
    if out.get("cutoff") is not None:  # a Benjamini–Hochberg pass: the cutoff decides, not alpha
        out["alpha"] = None
    return out


class _Stream:
    """One Ray Data execution: packed batches in, their packed results out in order."""

    def __init__(self, ray, scrubber, jobs: int, device: str | None) -> None:
        from ray.util.queue import Queue

        self.ray = ray
        self.queue = Queue(actor_options={"num_cpus": 0})
        kwargs = constructor_kwargs(scrubber)
        kwargs["threads"] = 1
        kwargs["echo_unchanged"] = False  # the driver has the input bytes: only changed ones come back
        kwargs["cls"] = type(scrubber)
        remote: dict[str, Any] = {"num_cpus": 1}
        if device and str(device).startswith("cuda"):
            gpus = float(ray.cluster_resources().get("GPU", 0))
            if gpus <= 0:
                raise ValueError(f"--device {device} with --engine ray: the Ray cluster has no GPUs")
            remote["num_gpus"] = 1 if gpus >= jobs else gpus / jobs  # fewer GPUs than actors: a share each
            kwargs["device"] = "cuda"  # the GPU Ray assigned to the actor
        ds = ray.data.from_items([{"feed": 0}])
        ctx = ds.context
        ctx.execution_options.preserve_order = True
        ctx.target_max_block_size = 1  # every row its own block: the feeder's batches are never merged
        for flag in ("enable_progress_bars", "enable_operator_progress_bars"):
            if hasattr(ctx, flag):
                setattr(ctx, flag, False)
        ds = ds.map_batches(_feed, fn_kwargs={"queue": self.queue}, batch_size=1, batch_format="pyarrow",
                            num_cpus=0)
        self.ds = ds.map_batches(PackedScrubber, fn_constructor_kwargs=kwargs, batch_size=1, batch_format="pyarrow",
                                 **_pool(ray, jobs), **remote)
        self._it = None
        self._rows: collections.deque = collections.deque()
        self._closed_input = False

    def put(self, batch: dict) -> Any:
        import pyarrow as pa

        ref = self.ray.put(pa.table({"batch": pa.array([pack(batch)], pa.binary())}))
        self.queue.put([ref])
        return ref

    def take(self) -> dict[str, list]:
        """The next batch's results (blocking)."""
        if self._it is None:
            # no prefetch: Ray's prefetcher waits for one block more than it hands out, which the
            # driver sends only after it has the results it is waiting for
            self._it = iter(self.ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0))
        while not self._rows:
            try:
                tbl = next(self._it)
            except StopIteration:
                raise RuntimeError("ray engine: the dataset ended before every batch came back") from None
            self._rows.extend(tbl.column("batch").to_pylist())
        return unpack(self._rows.popleft())

    def close_input(self) -> None:
        if not self._closed_input:
            self._closed_input = True
            self.queue.put(None)

    def finish(self) -> None:
        """End of input; let the execution end (nothing may be left)."""
        self.close_input()
        if self._it is not None:
            extra = sum(t.num_rows for t in self._it)
            if extra or self._rows:
                raise RuntimeError(f"ray engine: {extra + len(self._rows)} result batches left over")
        self.shutdown()

    def shutdown(self) -> None:
        try:
            self.close_input()
        except Exception:  # noqa: BLE001 - the queue actor may be gone already
            pass
        it, self._it = self._it, None
        if it is not None and hasattr(it, "close"):
            it.close()
        try:
            self.queue.shutdown(force=True)
        except Exception:  # noqa: BLE001
            pass


def _pool(ray, jobs: int) -> dict[str, Any]:
    """The actor-pool argument of ``map_batches`` for this Ray (``compute=`` since 2.51, where
    ``concurrency=`` is deprecated; ``concurrency=`` before)."""
    try:
        major, minor = (int(x) for x in ray.__version__.split(".")[:2])
    except ValueError:
        major, minor = 99, 0
    if (major, minor) >= (2, 51):
        return {"compute": ray.data.ActorPoolStrategy(size=jobs)}
    return {"concurrency": jobs}


class RayEngine:
    """Ray Data: ``jobs`` scrubber actors on the Ray cluster (see the module doc); batches travel
    whole, whatever their sizes."""

    name = "ray"

    def __init__(self, jobs: int = 1, device: str | None = None) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
        self.ray = import_ray()
        self.jobs = jobs
        self.device = device
        self._started = False

    def __enter__(self) -> "RayEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        else:
            ray.init(address="local", num_cpus=self.jobs, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
        self._started = True

    def close(self) -> None:
        """Shut down (or disconnect from) the Ray this engine started; a caller's Ray is left alone."""
        if self._started:
            self._started = False
            self.ray.shutdown()

    def run(self, scrubber, tasks: Iterable[tuple[Any, dict | None]]) -> Iterator[tuple[Any, dict | None]]:
        quiet = logging.getLogger("ray.data")  # its INFO lines (execution plans, progress) would flood stderr
        level = quiet.level
        quiet.setLevel(max(level, logging.WARNING))
        notices = logging.getLogger("ray.data._internal.progress")
        notices.addFilter(_NOTICE)
        stream: _Stream | None = None
        limit = IN_FLIGHT_PER_JOB * self.jobs
        window: collections.deque = collections.deque()  # (tag, ids or None for an empty unit, input ref)
        inflight = 0
        it = iter(tasks)
        done = False
        try:
            while True:
                while not done and inflight < limit:
                    try:
                        tag, batch = next(it)
                    except StopIteration:
                        done = True
                        if stream is not None:
                            stream.close_input()  # the execution may end once the last results are out
                        break
                    if batch is None:
                        window.append((tag, None, None))
                        continue
                    if stream is None:
                        self._connect()
                        stream = _Stream(self.ray, scrubber, self.jobs, self.device)
                    ref = stream.put(batch)  # held until its results are back
                    window.append((tag, [str(i) for i in batch["id"]], ref))
                    inflight += 1
                if not window:
                    break
                tag, ids, ref = window.popleft()
                if ids is None:
                    yield tag, None
                    continue
                res = stream.take()
                del ref
                inflight -= 1
                if [str(i) for i in res.get("id", [])] != ids:
                    raise RuntimeError("ray engine: results came back out of order")
                yield tag, res
            if stream is not None:
                s, stream = stream, None
                s.finish()
        finally:
            if stream is not None:
                stream.shutdown()
            quiet.setLevel(level)
            notices.removeFilter(_NOTICE)
