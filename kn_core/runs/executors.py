"""Executors of a batch: they turn jobs (prompts) into outcomes (attributions or failure reasons).

- ``local`` (default): in this process, one job after another, on the model already loaded.
- ``ray`` (optional dependency, ``pip install -r requirements-ray.txt``): one actor per CPU (or per GPU when
  the cluster has GPUs), each loading the model once; outcomes come back to the driver as they finish, and
  the driver alone writes the store. The prompts are tokenised on the driver and shipped as they are, so
  both executors attribute exactly the same inputs. When this module starts Ray (locally or connecting to
  ``address``) the actors receive this package's code from the driver (Ray ``py_modules``); they load the
  model from the same folder (which must exist on every node, e.g. a shared file system) or Hugging Face id.
  Ray starts only once the first job is handed out.

:func:`check` runs before any work (before the model loads): an unknown executor, a missing Ray, or an
``address`` where no cluster answers within ``connect_timeout`` seconds is one error naming the fix (Ray
itself would retry for minutes). Every executor has the signature ``(lm, jobs, config, address) ->
Iterator[Outcome]``, asks ``jobs`` for the next job only when it can start it (a batch claims each job then),
and never raises for a single job's failure: the reason comes back in the outcome.
"""
from __future__ import annotations

import itertools
import logging
import math
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

import torch

from kn_core.attribution import Attribution, AttributionConfig, attribute
from kn_core.data.prompts import Prompt
from kn_core.errors import InputError, KNError
from kn_core.model.loading import load_model

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)
PACKAGE = str(Path(__file__).resolve().parents[1])  # shipped to Ray actors as code
CONNECT_TIMEOUT_S = 30.0
ADDRESS_HINT = ("start one with `ray start --head` and pass --address auto (a head node listens on this machine's "
                "network address, not on 127.0.0.1; auto finds it), or leave --address out to run Ray on this "
                "machine only")


@dataclass(frozen=True)
class Job:
    """One prompt to attribute; ``id`` lets the driver match the outcome to its task."""

    id: int
    prompt: Prompt
    lang: str


@dataclass(frozen=True)
class Outcome:
    """The attribution of a job, or the reason it failed (exactly one of the two is set)."""

    job_id: int
    attribution: Attribution | None = None
    reason: str | None = None


class Jobs(Protocol):
    """The jobs of a run, handed out one at a time as the executor asks; ``len`` is how many there may be."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Job]: ...


Executor = Callable[..., Iterator[Outcome]]


def compute(lm: LanguageModel, job: Job, config: AttributionConfig) -> Outcome:
    """Attribute one job; any error becomes the outcome's reason instead of propagating."""
    try:
        return Outcome(job.id, attribution=attribute(lm, job.prompt, config, lang=job.lang))
    except KNError as exc:
        return Outcome(job.id, reason=str(exc))
    except Exception as exc:  # a batch records every per-prompt failure and goes on
        log.debug("job %d failed", job.id, exc_info=True)
        return Outcome(job.id, reason=f"{type(exc).__name__}: {exc}")


def run_local(lm: LanguageModel, jobs: Jobs, config: AttributionConfig,
              address: str | None = None) -> Iterator[Outcome]:
    """Attribute the jobs in this process, in order (:func:`check` refuses an ``address``), each holding the
    model's lock (others sharing the loaded model, e.g. the app's sessions, take turns with it per prompt)."""
    for job in jobs:
        with lm.lock:
            outcome = compute(lm, job, config)
        yield outcome


class Worker:
    """A Ray actor's state: the model, loaded once (on the GPU when the actor was given one)."""

    def __init__(self, model_name: str):
        self.lm = load_model(model_name, device="cuda" if torch.cuda.is_available() else None)

    def compute(self, job: Job, config: AttributionConfig) -> Outcome:
        return compute(self.lm, job, config)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("executor", "the ray executor needs Ray: pip install -r requirements-ray.txt "
                                     "(or use --executor local)") from None
    return ray


def _actor_count(resources: dict, jobs: int) -> tuple[int, float]:
    """(actors, GPUs per actor): one per GPU when the cluster has GPUs, else one per CPU; never more than jobs."""
    gpus = int(resources.get("GPU", 0))
    count = gpus if gpus else max(1, int(resources.get("CPU", 1)))
    return max(1, min(count, jobs)), (1.0 if gpus else 0.0)


def run_ray(lm: LanguageModel, jobs: Jobs, config: AttributionConfig, address: str | None = None) -> Iterator[Outcome]:
    """Fan the jobs out over Ray actors: on the Ray instance this process already joined, else on the cluster
    at ``address``, else on a new local instance (stopped afterwards), once the first job is handed out.
    Raises at once when Ray is missing."""
    return _ray_outcomes(_import_ray(), lm, jobs, config, address)


def check(executor: str, address: str | None = None, connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise the error a run of ``executor`` would meet before any work: an unknown executor, an ``address``
    without the ray executor, Ray not installed, or no cluster answering at ``address`` in ``connect_timeout`` s."""
    if executor not in EXECUTORS:
        raise InputError("executor", f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "local" and address is not None:
        raise InputError("address", "only the ray executor connects to a cluster; add --executor ray")
    if executor == "ray":
        _import_ray()
        if address is not None:
            _check_address(address, connect_timeout)


def _check_address(address: str, timeout: float) -> None:
    """Raise unless a server accepts a connection at ``address`` within ``timeout`` seconds. The address is
    resolved as ``ray.init`` resolves it (``auto``, ``RAY_ADDRESS``, 127.0.0.1 → this machine's address)."""
    from ray._private.services import canonicalize_bootstrap_address  # ray.init's own resolution (ray pinned)

    if not (math.isfinite(timeout) and timeout > 0):
        raise InputError("ray-timeout", f"must be a positive number of seconds (got {timeout:g})")
    try:
        resolved = canonicalize_bootstrap_address(address)
        if resolved is None:  # `local`: ray.init starts an instance of its own, there is no cluster to ask
            return
        host, _, port = resolved.rpartition(":")
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except TimeoutError:
        raise InputError("address", f"no Ray cluster answered at {address} within {timeout:g} s; "
                                    f"{ADDRESS_HINT}") from None
    except (OSError, ValueError) as exc:  # refused, unknown host, malformed, or `auto` with no cluster running
        raise InputError("address", f"no Ray cluster at {address} ({exc}); {ADDRESS_HINT}") from None


def _ray_outcomes(ray, lm: LanguageModel, jobs: Jobs, config: AttributionConfig,
                  address: str | None) -> Iterator[Outcome]:
    from ray.util import ActorPool

    pending = iter(jobs)
    first = next(pending, None)
    if first is None:  # nothing was handed out (e.g. another batch holds every job): no need for Ray
        return
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, log_to_driver=False, runtime_env={"py_modules": [PACKAGE]})
        except ConnectionError as exc:
            raise InputError("address", f"cannot join the Ray cluster at {address} ({exc}); {ADDRESS_HINT}") from None
    try:
        count, gpus = _actor_count(ray.cluster_resources(), len(jobs))
        log.info("ray: %d actor(s), %g GPU each, up to %d job(s)", count, gpus, len(jobs))
        actor = ray.remote(num_cpus=1, num_gpus=gpus)(Worker)
        source = str(lm.source.resolve()) if lm.source is not None else lm.name
        pool = ActorPool([actor.remote(source) for _ in range(count)])
        yield from _pooled(pool, itertools.chain([first], pending),
                           lambda worker, job: worker.compute.remote(job, config))
    except ray.exceptions.RayError as exc:
        raise KNError(f"executor: a Ray worker failed ({type(exc).__name__}); what was computed is stored: "
                      "run the same command again to resume") from exc
    finally:
        if started:
            ray.shutdown()


def _pooled(pool, jobs: Iterator[Job], submit: Callable) -> Iterator[Outcome]:
    """The outcomes of ``jobs`` on the actors of ``pool``, as they finish; the next job is taken from ``jobs``
    only when an actor is free for it."""
    while True:
        while pool.has_free() and (job := next(jobs, None)) is not None:
            pool.submit(submit, job)
        if not pool.has_next():
            return
        yield pool.get_next_unordered()


EXECUTORS: dict[str, Executor] = {"local": run_local, "ray": run_ray}
