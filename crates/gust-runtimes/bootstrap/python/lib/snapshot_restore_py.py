"""SnapStart runtime hooks, as Lambda's Python runtimes provide them.

Functions register callables to run before their version's snapshot is taken and after each
environment is restored from it. Gust runs them when the function's version uses SnapStart;
otherwise registering them has no effect, as on Lambda.
"""

_before_snapshot = []
_after_restore = []


def register_before_snapshot(func, *args, **kwargs):
    """Runs `func(*args, **kwargs)` before the snapshot (in reverse order of registration).
    Usable as a decorator."""
    _before_snapshot.append((func, args, kwargs))
    return func


def register_after_restore(func, *args, **kwargs):
    """Runs `func(*args, **kwargs)` after each restore (in order of registration). Usable as a
    decorator."""
    _after_restore.append((func, args, kwargs))
    return func


def get_before_snapshot():
    return _before_snapshot


def get_after_restore():
    return _after_restore
