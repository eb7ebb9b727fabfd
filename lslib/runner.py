"""Where a sweep's work runs: in this process, on a local Ray, or on a Ray cluster.

A sweep (:func:`lslib.experiments.run_sweep`) or an audit (:func:`lslib.audit.audit_setup`) is a
list of :class:`Job` s. Each job needs one or more trained models (:class:`ModelSpec`, cached under
``<cache>/<key>.pt``) and computes one result (a table row, an audited model) with a plain
top-level function. :func:`run_jobs` hands the results, one at a time, to a callback in the
calling process, the *driver*, which is the only process that writes anything: the journal, the
table, the meta file and the model cache.

Two ways to execute the same jobs (:class:`Execution`):

- **embedded** (the default): no Ray, one process, the jobs in order; what ``make test``, the book
  and a laptop use.
- **Ray**: ``Execution(workers=N)`` starts a local Ray with N CPUs (no dashboard, no usage
  statistics), ``Execution(address=ADDR)`` joins a running Ray cluster (``ray start --head`` on one
  machine, ``ray start --address=HEAD:6379`` on the others). Model training and jobs become Ray
  tasks (one CPU each, ``gpus_per_task`` GPUs each); trained weights come back to the driver, which
  caches them and hands them to the jobs through Ray's object store, so the workers need the data
  (``LSLIB_DATA`` or ``data_root`` on every machine) but no shared disk. A model whose training
  starts from another (:attr:`ModelSpec.needs`: the original protocol's LeNets start from one
  natural checkpoint) is trained after that one, which is trained once and handed over the same
  way. The one thing a worker writes is the per-epoch state of a training that can be resumed
  (the original protocol's), in the cache folder's path on its own machine. A worker that dies
  mid-task (killed, out of memory, a machine lost) is replaced and its task retried by Ray
  (:data:`MAX_RETRIES`); an exception raised by lslib's own code is not retried but raised in the
  driver.

Every task seeds itself from what it computes (the training seed, the row's key), never from its
position in the run, and runs torch on a fixed number of threads (``threads``, default one per
CPU of the task), so the results do not depend on the execution: a Ray run and an embedded run
with the same thread count give the same numbers (tested cell for cell).
"""

from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["MAX_RETRIES", "Execution", "Job", "ModelSpec", "RunnerError",
           "add_execution_arguments", "execution_from_args", "run_jobs"]

#: How often Ray re-runs a task whose worker process died (not for exceptions raised by lslib).
MAX_RETRIES = 3


class RunnerError(RuntimeError):
    """Ray cannot be used as asked (not installed, no cluster at the address)."""


@dataclass(frozen=True)
class Execution:
    """How to execute a sweep's tasks.

    ``workers``: start a local Ray with that many CPUs; ``address``: join the Ray cluster at
    ``ADDR`` (``"auto"``: the one started on this machine by ``ray start``); neither: embedded,
    no Ray. ``gpus_per_task``: GPUs Ray gives each task (fractions share a GPU); the tasks then
    run on ``cuda``. ``cpus_per_task``: CPUs Ray reserves per task. ``threads``: torch threads
    in each task (default: ``cpus_per_task`` under Ray, torch's own default embedded).
    ``keep_freed_memory``: the Ray workers' C allocator keeps freed memory
    (:func:`lslib.allocator.keep_freed_memory`), as the command line does for its own process.
    """

    workers: int | None = None
    address: str | None = None
    gpus_per_task: float = 0.0
    cpus_per_task: float = 1.0
    threads: int | None = None
    keep_freed_memory: bool = False

    def __post_init__(self) -> None:
        if self.workers is not None and (isinstance(self.workers, bool)
                                         or not isinstance(self.workers, int)
                                         or self.workers < 1):
            raise ValueError(f"workers must be an integer >= 1, got {self.workers!r}")
        if self.address is not None and (not isinstance(self.address, str)
                                         or not self.address.strip()):
            raise ValueError(f"address must be a Ray address such as 'auto' or "
                             f"'HOST:6379', got {self.address!r}")
        if self.workers is not None and self.address is not None:
            raise ValueError("give workers (start a local Ray) or address (join a cluster), "
                             "not both")
        for name in ("gpus_per_task", "cpus_per_task"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.cpus_per_task == 0 and self.gpus_per_task == 0:
            raise ValueError("a task needs a CPU or a GPU: cpus_per_task and gpus_per_task "
                             "are both 0")
        if self.gpus_per_task > 0 and not self.distributed:
            raise ValueError("gpus_per_task needs Ray: give workers or address too (embedded, "
                             "use device='cuda')")
        if self.threads is not None and (isinstance(self.threads, bool)
                                         or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"threads must be an integer >= 1, got {self.threads!r}")

    @property
    def distributed(self) -> bool:
        """True when the tasks run on Ray."""
        return self.workers is not None or self.address is not None

    def task_threads(self) -> int | None:
        """torch threads in a task (None: leave torch's setting alone)."""
        if self.threads is not None:
            return self.threads
        return max(1, int(self.cpus_per_task)) if self.distributed else None

    def describe(self) -> str:
        if self.workers is not None:
            how = f"local Ray, {self.workers} CPU(s)"
        elif self.address is not None:
            how = f"Ray cluster at {self.address}"
        else:
            return "embedded (one process)"
        gpu = f", {self.gpus_per_task:g} GPU(s) per task" if self.gpus_per_task else ""
        return f"{how}, {self.cpus_per_task:g} CPU(s) per task{gpu}"


@dataclass(frozen=True)
class ModelSpec:
    """A model a job needs: set-up name and training config (cached by ``config.key()``)."""

    setup: str
    config: Any  # lslib.train.TrainConfig

    @property
    def key(self) -> str:
        return self.config.key()

    @property
    def needs(self) -> tuple[ModelSpec, ...]:
        """The models this one's training starts from (a config's ``start_from``, as the
        original protocol's LeNet has): trained first, once, and handed to its training."""
        start = getattr(self.config, "start_from", None)
        return () if start is None else (ModelSpec(self.setup, start),)


@dataclass(frozen=True, eq=False)
class Job:
    """One unit of work: ``fn(models, device, **kwargs) -> result`` where ``models`` are the
    trained modules of ``models`` (eval mode, on ``device``). ``fn`` must be a module-level
    function (Ray sends it by reference) and must seed whatever it draws from ``kwargs``."""

    key: str
    models: tuple[ModelSpec, ...]
    fn: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Where:
    """What every task needs to find data and where to run."""

    data_root: str | None
    download: bool
    device: str | None  # embedded: the device; Ray: None (cpu, or cuda with GPUs)
    threads: int | None
    progress: bool  # training bars (embedded only)
    keep_freed_memory: bool = False  # set the worker's allocator before its first task
    cache: str | None = None  # the model cache's folder: where a training keeps its partial state


# --------------------------------------------------------------------------------------------
# the tasks: plain functions, run in this process or in a Ray worker
# --------------------------------------------------------------------------------------------


def _task_device(where: _Where) -> torch.device:
    if where.device is not None:
        return torch.device(where.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_ALLOCATOR_SET = False


@contextmanager
def _threads(n: int | None, where: _Where | None = None) -> Iterator[None]:
    """torch on ``n`` threads (None: as it is) for the block; the allocator as ``where`` says."""
    global _ALLOCATOR_SET
    if where is not None and where.keep_freed_memory and not _ALLOCATOR_SET:
        from lslib.allocator import keep_freed_memory

        _ALLOCATOR_SET = keep_freed_memory()
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_task(spec: ModelSpec, where: _Where, *start_states: dict[str, torch.Tensor]
               ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train ``spec``'s model from its seed (and from the weights ``start_states`` of
    ``spec.needs``); returns its CPU state dict and training record."""
    from lslib.experiments import SETUPS, train_fresh

    device = _task_device(where)
    own = getattr(spec.config, "train_fresh", None)  # a config that trains itself (original)
    if own is not None:
        with _threads(where.threads, where):
            model, record = own(device=device, data_root=where.data_root,
                                download=where.download, progress=where.progress,
                                cache=None if where.cache is None else Path(where.cache),
                                start_state=start_states[0] if start_states else None)
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}, record
    with _threads(where.threads, where):
        model, record = train_fresh(SETUPS[spec.setup], spec.config, device=device,
                                    data_root=where.data_root, download=where.download,
                                    progress=where.progress)
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}, record


def build_trained(spec: ModelSpec, state: dict[str, torch.Tensor],
                  device: torch.device) -> nn.Module:
    """``spec``'s architecture with the weights ``state``, in eval mode on ``device``."""
    from lslib.models import build_model

    build = getattr(spec.config, "build", None)  # a config that builds its own model (original)
    model = build() if build is not None else build_model(spec.config.model)
    model.load_state_dict(state)
    return model.to(device).eval()


def job_task(job: Job, where: _Where, *states: dict[str, torch.Tensor]) -> tuple[Any, str]:
    """Run ``job`` on the models with weights ``states``; returns its result and the device it
    ran on (a description for the provenance)."""
    from lslib.experiments import device_name

    device = _task_device(where)
    with _threads(where.threads, where):
        models = [build_trained(s, st, device) for s, st in zip(job.models, states, strict=True)]
        return job.fn(models, device, **job.kwargs), device_name(device)


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------


class _Cache:
    """The model cache as the driver sees it: ``<dir>/<key>.pt`` files, written only here."""

    def __init__(self, directory: Path, log: Callable[[str], None]) -> None:
        self.dir = directory
        self.log = log

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        from lslib._files import CheckpointError, read_cache_entry

        path = self.dir / f"{key}.pt"
        if not path.exists():
            return None
        try:
            return read_cache_entry(path)
        except CheckpointError as exc:
            aside = path.with_name(path.name + f".damaged-{int(time.time())}")
            os.replace(path, aside)
            self.log(f"warning: {path}: {exc.problem}; moved it to {aside.name} and training "
                     "the model again")
            return None

    def save(self, key: str, state: dict[str, torch.Tensor], record: dict[str, Any]) -> None:
        from lslib.experiments import atomic_write

        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.dir / f"{key}.pt",
                     lambda p: torch.save({"state_dict": state, "record": record}, p))


OnResult = Callable[[Job, Any, dict[str, dict[str, Any]], str], None]
"""``on_result(job, result, records, device)``: ``records`` maps each of the job's model keys to
its training record; ``device`` says where the job ran."""


def run_jobs(jobs: Sequence[Job], on_result: OnResult, *, execution: Execution | None = None,
             cache: Path, data_root: str | os.PathLike | None = None, download: bool = False,
             device: str | torch.device | None = None, progress: bool = False,
             log: Callable[[str], None] | None = None,
             on_event: Callable[[str, Job | ModelSpec], None] | None = None) -> int:
    """Run every job of ``jobs`` and hand each result to ``on_result`` (in the driver, as soon as
    it is there; embedded, in the order of ``jobs``). Models missing from ``cache`` are trained
    once each, whatever number of jobs need them, and written to the cache by the driver.
    ``on_event(kind, what)`` is told ``"train"``/``"trained"`` for models and
    ``"start"`` for jobs sent to run. Returns the number of models trained.
    """
    execution = execution or Execution()
    log = log or (lambda msg: None)
    on_event = on_event or (lambda kind, what: None)
    store = _Cache(Path(cache), log)
    root = None if data_root is None else str(data_root)
    if not execution.distributed:
        where = _Where(root, download, None if device is None else str(device),
                       execution.task_threads(), progress, cache=str(store.dir.resolve()))
        return _run_embedded(jobs, on_result, store, where, on_event)
    if device is not None and torch.device(device).type == "cuda" and not execution.gpus_per_task:
        raise ValueError("with Ray, ask for GPUs with gpus_per_task (--gpus-per-task), "
                         "not device='cuda'")
    where = _Where(root, download, None if execution.gpus_per_task else "cpu",
                   execution.task_threads(), False, execution.keep_freed_memory,
                   str(store.dir.resolve()))
    return _run_ray(jobs, on_result, store, where, execution, log, on_event)


def _run_embedded(jobs: Sequence[Job], on_result: OnResult, store: _Cache, where: _Where,
                  on_event: Callable[[str, Any], None]) -> int:
    states: OrderedDict[str, tuple[dict, dict]] = OrderedDict()  # the last few models
    trained = 0

    def ensure(spec: ModelSpec) -> tuple[dict, dict]:
        nonlocal trained
        if spec.key in states:
            states.move_to_end(spec.key)
            return states[spec.key]
        got = store.load(spec.key)
        if got is None:
            starts = [ensure(need)[0] for need in spec.needs]
            on_event("train", spec)
            got = train_task(spec, where, *starts)
            store.save(spec.key, *got)
            trained += 1
            on_event("trained", spec)
        states[spec.key] = got
        while len(states) > 4:
            states.popitem(last=False)
        return got

    for job in jobs:
        got = [ensure(spec) for spec in job.models]
        on_event("start", job)
        result, ran_on = job_task(job, where, *(state for state, _ in got))
        on_result(job, result, {s.key: record for s, (_, record) in zip(job.models, got,
                                                                          strict=True)}, ran_on)
    return trained


def start_ray(execution: Execution, log: Callable[[str], None]) -> bool:
    """Connect to Ray as ``execution`` says; True if this call started it (and so must stop it).
    A Ray already initialised in this process (a test's shared cluster) is used as it is."""
    try:
        import ray
    except ImportError:  # pragma: no cover - depends on the environment
        raise RunnerError("Ray is not installed: pip install 'lslib[cluster]' (or drop "
                          "--workers/--address to run in one process)") from None
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                  logging_level="ERROR")
    if execution.workers is not None:
        # Ray nices its workers to 15 by default; a local Ray is the user's foreground job, so
        # its workers get the priority a one-process run has
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(num_cpus=execution.workers, **kwargs)
    else:
        try:
            ray.init(address=execution.address, **kwargs)
        except (ConnectionError, ValueError) as exc:
            raise RunnerError(f"cannot join the Ray cluster at {execution.address!r}: "
                              f"{str(exc).splitlines()[0]} (start one with `ray start --head`)"
                              ) from None
    log(f"runner: {execution.describe()}")
    return True


def _run_ray(jobs: Sequence[Job], on_result: OnResult, store: _Cache, where: _Where,
             execution: Execution, log: Callable[[str], None],
             on_event: Callable[[str, Any], None]) -> int:
    import ray

    started = start_ray(execution, log)
    resources = dict(num_cpus=execution.cpus_per_task, num_gpus=execution.gpus_per_task,
                     max_retries=MAX_RETRIES, retry_exceptions=False)
    train_remote = ray.remote(**resources)(train_task)
    job_remote = ray.remote(**resources)(job_task)
    in_flight: dict[Any, tuple[str, Any]] = {}
    try:
        state_refs: dict[str, Any] = {}
        records: dict[str, dict[str, Any]] = {}
        training: set[str] = set()
        trained = 0
        waiting: list[Job] = list(jobs)

        def release(pending: list, needs: Callable[[Any], Sequence[ModelSpec]],
                    submit: Callable[[Any], None]) -> list:
            """Submit each item of ``pending`` whose needed models are there; the others."""
            still = []
            for item in pending:
                if all(n.key in state_refs for n in needs(item)):
                    submit(item)
                else:
                    still.append(item)
            return still

        def submit_job(job: Job) -> None:
            on_event("start", job)
            ref = job_remote.remote(job, where, *(state_refs[s.key] for s in job.models))
            in_flight[ref] = ("job", job)

        def submit_training(spec: ModelSpec) -> None:
            on_event("train", spec)
            ref = train_remote.remote(spec, where, *(state_refs[n.key] for n in spec.needs))
            in_flight[ref] = ("model", spec)

        untrained: list[ModelSpec] = []  # to train once the models they start from are there

        def want(spec: ModelSpec) -> None:
            if spec.key in state_refs or spec.key in training:
                return
            got = store.load(spec.key)
            if got is not None:
                state_refs[spec.key] = ray.put(got[0])
                records[spec.key] = got[1]
                return
            training.add(spec.key)
            for need in spec.needs:
                want(need)
            untrained.append(spec)

        for job in jobs:  # models: from the cache, or trained (once each)
            for spec in job.models:
                want(spec)
        untrained = release(untrained, lambda spec: spec.needs, submit_training)
        waiting = release(waiting, lambda job: job.models, submit_job)
        while in_flight:
            done, _ = ray.wait(list(in_flight), num_returns=1)
            kind, what = in_flight.pop(done[0])
            value = ray.get(done[0])
            if kind == "model":
                state, record = value
                store.save(what.key, state, record)
                trained += 1
                on_event("trained", what)
                state_refs[what.key] = ray.put(state)
                records[what.key] = record
                untrained = release(untrained, lambda spec: spec.needs, submit_training)
                waiting = release(waiting, lambda job: job.models, submit_job)
            else:
                result, ran_on = value
                on_result(what, result, {s.key: records[s.key] for s in what.models}, ran_on)
        return trained
    finally:
        # interrupted or failed: what is still in flight is dropped with this driver (Ray ends an
        # owner's tasks when it disconnects; a forced ray.cancel here races the tasks' replies
        # and can abort Ray's core worker)
        if started:
            ray.shutdown()



# --------------------------------------------------------------------------------------------
# command-line options, shared by `reproduce` and `audit`
# --------------------------------------------------------------------------------------------


def add_execution_arguments(parser: Any) -> None:
    """``--workers``, ``--address`` and ``--gpus-per-task`` on an argparse parser."""
    from lslib import _cli

    group = parser.add_argument_group("where to run (default: this process, in order)")
    how = group.add_mutually_exclusive_group()
    how.add_argument("--workers", type=_cli.int_at_least(1), default=None, metavar="N",
                     help="start a local Ray with N CPUs and run N tasks at a time "
                     "(needs lslib[cluster])")
    how.add_argument("--address", default=None, metavar="ADDR",
                     help="join a running Ray cluster: 'auto' (started here by `ray start "
                     "--head`) or HOST:6379")
    group.add_argument("--gpus-per-task", type=_cli.number(_cli.POSITIVE), default=None,
                       metavar="G",
                       help="GPUs Ray gives each task (with --workers or --address); the tasks "
                       "then run on cuda")


def execution_from_args(args: Any) -> Execution:
    """The :class:`Execution` of parsed :func:`add_execution_arguments` options (ValueError with
    the flags' names when they do not fit together)."""
    gpus = args.gpus_per_task or 0.0
    distributed = args.workers is not None or args.address is not None
    if gpus and not distributed:
        raise ValueError("--gpus-per-task needs --workers or --address (in one process, use "
                         "--device cuda)")
    if distributed and getattr(args, "device", None) not in (None, "cpu"):
        raise ValueError("--device is for one process; with --workers or --address the tasks "
                         "run on the CPU, or on GPUs with --gpus-per-task")
    # the command line's own process keeps freed memory (lslib.__main__.entry_point): so do the
    # processes that run its tasks
    return Execution(workers=args.workers, address=args.address, gpus_per_task=gpus,
                     threads=getattr(args, "threads", None), keep_freed_memory=True)
