"""A Numba kernel called straight through its compiled entry point.

On every call a Numba dispatcher works out the type of each argument to pick the
compiled version. For the namedtuples of arrays the drafter's kernels take, that is
Python code: 1-2 microseconds a namedtuple with caches warm, and tens of microseconds a
call with them cold, as they are right after llama_decode, on every verification
step's critical path (Qwen2.5-Coder-0.5B, flat curve, trees of 40 nodes on average:
0.655 -> 0.606 ms of host CPU a step, docs/benchmarks-history.md session 9). The
drafter passes its kernels the same arrays, of the same types, at every step, so the
version picked at the first call is the one for all of them.

The entry point converts what it unboxes rather than checking its type: a float passed
where the bound version takes an integer is truncated, and an array's dtype and
dimensions are not checked. So a BoundKernel is only for call sites whose arguments
keep their types (the drafter's own arrays; scalars that are always ints, or always
floats). A call whose arguments the entry point cannot unbox at all (a tuple of another
length, None for a number) goes through the dispatcher, and binds again to the version
it picks.
"""

from __future__ import annotations

import numba as nb


class BoundKernel:
    def __init__(self, dispatcher):
        self._dispatcher = dispatcher
        self._entry = None

    def __call__(self, *args):
        entry = self._entry
        if entry is not None:
            try:
                return entry(*args)
            except (TypeError, ValueError):  # arguments it cannot unbox
                pass
        self._entry = self._dispatcher.compile(tuple(nb.typeof(a) for a in args))
        return self._entry(*args)
