"""Executors of a batch: they turn jobs (prompts) into outcomes (attributions or failure reasons).

- ``local`` (default): in this process, one job after another, on the model already loaded.
- ``ray`` (optional dependency, ``pip install -r requirements-ray.txt``): one actor per CPU (or per GPU when
  the cluster has GPUs), each loading the model once; outcomes come back to the driver as they finish, and
  the driver alone writes the store. The prompts are tokenised on the driver and shipped as they are, so
  both executors attribute exactly the same inputs. When this module starts Ray (locally or connecting to
  ``address``) the actors receive this package's code from the driver (Ray ``py_modules``); they load the
  model from the same folder (which must exist on every node, e.g. a shared file system) or Hugging Face id.

Every executor has the signature ``(lm, jobs, config, address) -> Iterator[Outcome]`` and never raises for
a single job's failure: the reason comes back in the outcome.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch

from kn_core.attribution import Attribution, AttributionConfig, attribute
from kn_core.data.prompts import Prompt
from kn_core.errors import InputError, KNError
from kn_core.model.loading import load_model

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)
PACKAGE = str(Path(__file__).resolve().parents[1])  # shipped to Ray actors as code


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


def run_local(lm: LanguageModel, jobs: Sequence[Job], config: AttributionConfig,
              address: str | None = None) -> Iterator[Outcome]:
    """Attribute the jobs in this process, in order."""
    if address is not None:
        raise InputError("address", "only the ray executor connects to a cluster; add --executor ray")
    return (compute(lm, job, config) for job in jobs)


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


def run_ray(lm: LanguageModel, jobs: Sequence[Job], config: AttributionConfig, address: str | None = None) -> Iterator[Outcome]:
    """Fan the jobs out over Ray actors: on the Ray instance this process already joined, else on the cluster
    at ``address``, else on a new local instance (stopped afterwards). Raises at once when Ray is missing."""
    ray = _import_ray()
    return _ray_outcomes(ray, lm, list(jobs), config, address) if jobs else iter(())


def _ray_outcomes(ray, lm: LanguageModel, jobs: list[Job], config: AttributionConfig, address: str | None) -> Iterator[Outcome]:
    from ray.util import ActorPool

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, log_to_driver=False, runtime_env={"py_modules": [PACKAGE]})
    try:
        count, gpus = _actor_count(ray.cluster_resources(), len(jobs))
        log.info("ray: %d actor(s), %g GPU each, %d job(s)", count, gpus, len(jobs))
        actor = ray.remote(num_cpus=1, num_gpus=gpus)(Worker)
        source = str(lm.source.resolve()) if lm.source is not None else lm.name
        pool = ActorPool([actor.remote(source) for _ in range(count)])
        yield from pool.map_unordered(lambda a, job: a.compute.remote(job, config), jobs)
    finally:
        if started:
            ray.shutdown()


EXECUTORS: dict[str, Executor] = {"local": run_local, "ray": run_ray}
