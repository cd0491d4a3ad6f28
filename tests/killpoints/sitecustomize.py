"""Test-only: SIGKILL a search's whole process group right before one of its Optuna writes.

On ``PYTHONPATH`` only in tests/test_team.py's kill-point cases and tests/killpoints/sweep.py,
and active only when ``KILLPOINT_COUNTER`` is set. Every storage write of every process of the
search (main process and workers) takes a number from that file under an exclusive lock and is
logged there as ``number pid method key #trial_id``. The kill comes before write number
``KILLPOINT_AT`` (the sweep), or before the first write whose description contains
``KILLPOINT_MATCH`` (the tests: a place in a trial's life, whatever the timing of the other
worker); that write is the file's last line and never happens. No other write of the search
gets past the lock meanwhile.
"""

import os

if os.environ.get("KILLPOINT_COUNTER"):
    import fcntl
    import functools
    import signal

    from optuna.storages import RDBStorage

    _AT = int(os.environ.get("KILLPOINT_AT", "0"))
    _MATCH = os.environ.get("KILLPOINT_MATCH", "")
    _COUNTER = os.environ["KILLPOINT_COUNTER"]
    _WRITES = (
        "create_new_study", "set_study_user_attr", "set_study_system_attr", "_create_new_trial",
        "_set_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
        "set_trial_user_attr", "set_trial_system_attr", "record_heartbeat",
    )  # fmt: skip

    def _describe(name, args):
        """``method key #trial_id``: the key (attribute, parameter, new state) first."""
        if name in ("set_trial_user_attr", "set_trial_system_attr", "_set_trial_param"):
            return f"{name} {args[1]} #{args[0]}"
        if name == "set_trial_state_values":
            return f"{name} {getattr(args[1], 'name', args[1])} #{args[0]}"
        if name in ("set_trial_intermediate_value", "record_heartbeat"):
            return f"{name} #{args[0]}"
        return name

    def _count(name, args):
        with open(_COUNTER, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # held until the write is logged (or we die)
            handle.seek(0)
            number = sum(1 for _ in handle) + 1
            described = _describe(name, args)
            handle.write(f"{number} {os.getpid()} {described}\n")
            handle.flush()
            if number == _AT or (_MATCH and _MATCH in described):
                # the whole search, as `kill -9 -- -PGID`; the logged write never happens
                os.killpg(0, signal.SIGKILL)

    def _counted(name, method):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            _count(name, (*args, *kwargs.values()))
            return method(self, *args, **kwargs)

        return wrapper

    for _name in _WRITES:
        setattr(RDBStorage, _name, _counted(_name, getattr(RDBStorage, _name)))
