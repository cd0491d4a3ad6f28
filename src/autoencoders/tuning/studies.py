"""Study storage: the RDB URL, opening it with heartbeats, creating or loading a study, counts.

A path becomes an SQLite file; any other RDB URL (PostgreSQL) is checked for reachability first.
A study is created with a seeded TPE sampler and a median pruner; a new one gets the configured
values as its first trial.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import optuna

from autoencoders import tracking
from autoencoders.config import ConfigError
from autoencoders.tuning import recovery, space

FINISHED_STATES = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.FAIL,
)


# What counts towards n_trials: a failed trial (an error, a NaN, a killed worker) does not.
COUNTED_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


SQLITE_TIMEOUT_S = 60


def storage_url(storage: str) -> str:
    """A path becomes ``sqlite:///<absolute path>``; a URL (``postgresql://...``) stays as is."""
    if "://" in storage:
        return storage
    path = Path(storage).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def redact(url: str) -> str:
    """The storage URL without its password, for records and logs."""
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported as given, minus nothing secret in it
        return url.split("@")[-1] if "@" in url else url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats; SQLite waits up to a minute for a concurrent writer.

    An unreachable server or a wrong password raises ``tracking.ServiceError`` (one line).
    """
    engine_kwargs = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    else:
        tracking.check_database(url, "Optuna storage", "STORAGE / --storage / tune.storage")
    import sqlalchemy.exc

    try:
        with warnings.catch_warnings():
            # Heartbeats are "experimental" in Optuna since 2.9; they are what lets a study resume.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=recovery.HEARTBEAT_INTERVAL_S,
                grace_period=recovery.HEARTBEAT_GRACE_S,
                heartbeat_stale_trial_callback=recovery.on_stale_trial,
            )
    except sqlalchemy.exc.SQLAlchemyError as error:  # e.g. an SQLite file in a missing folder
        reason = " ".join(str(getattr(error, "orig", None) or error).split())[:200]
        raise ConfigError(
            f"Optuna storage {redact(url)} cannot be opened ({reason}): "
            "fix tune.storage (or --storage / STORAGE)."
        ) from None


def _sampler_seed(seed: int, study_name: str, worker: int, n_existing: int) -> int:
    # A resumed study or a second worker must not replay the first trials' random draws, and
    # two variants' studies should not draw the same values either.
    name_key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:4], "little")
    entropy = [seed, name_key, worker, n_existing]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def open_study(
    plan: space.SearchPlan, url: str, worker: int = 0, rerun_command: str = ""
) -> optuna.Study:
    """Create or load the plan's study (seeded TPE, median pruner); record what it is."""
    storage = open_storage(url)
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=plan.settings.pruner_startup_trials,
        n_warmup_steps=plan.settings.pruner_warmup_epochs,
    )
    probe = optuna.create_study(
        study_name=plan.study_name,
        storage=storage,
        direction="minimize",
        pruner=pruner,
        load_if_exists=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(probe)  # on_stale_trial re-queues them
    n_existing = len(probe.get_trials(deepcopy=False))
    study = optuna.load_study(
        study_name=plan.study_name,
        storage=storage,
        sampler=optuna.samplers.TPESampler(
            seed=_sampler_seed(plan.seed, plan.study_name, worker, n_existing)
        ),
        pruner=pruner,
    )
    if worker == 0:
        attributes = {
            "variant": plan.variant,
            "data_checksum": plan.data_checksum,
            "rerun_command": rerun_command,
            "search_space": {d.name: d.describe() for d in plan.space},
            "fidelity": plan.fidelity(),
            "seed": plan.seed,
        }
        for key, value in attributes.items():
            if study.user_attrs.get(key) != value:
                study.set_user_attr(key, value)
        if n_existing == 0:
            # The configured values go first: at this fidelity the best trial is then never
            # worse than training with params.yaml as it stands.
            defaults = {
                d.name: plan.defaults()[d.name]
                for d in plan.space
                if d.contains(plan.defaults()[d.name])
            }
            if len(defaults) == len(plan.space) and defaults:
                study.enqueue_trial(defaults, user_attrs={"source": "defaults"})
    return study


def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards n_trials: complete and pruned ones (failed and killed do not)."""
    return len(study.get_trials(deepcopy=False, states=COUNTED_STATES))


def count_states(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    """How many of ``trials`` completed, were pruned and failed."""
    return {
        "complete": sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials),
    }


def finished_counts(study: optuna.Study) -> dict[str, int]:
    """The study's complete, pruned and failed trials."""
    return count_states(study.get_trials(deepcopy=False, states=FINISHED_STATES))
