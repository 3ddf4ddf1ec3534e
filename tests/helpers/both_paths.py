"""Step one fleet on its numpy path and on its compiled path side by side, and check they agree.

The numpy kernels are the reference; the compiled ones (``fleet.use_numba``)
must give the same envelope (and the work arrays the step reads back) and the
same state after every tick, to 1e-9, under the same arbitrary setpoints.
"""

from __future__ import annotations

import numpy as np

TOL = 1e-9  # relative and absolute


def assert_paths_agree(fleet, n_ticks: int, dt_s: float, setpoints, state_fields, work_fields=()) -> None:
    """Run ``n_ticks`` on both paths; ``setpoints(env)`` [kW] picks each tick's setpoints from the numpy envelope.

    Checks every tick: the envelopes and ``work_fields`` of the workspaces agree,
    ``p_min <= p_default <= p_max`` holds on the compiled path, and after the step
    the ``state_fields`` agree.
    """
    states = {False: fleet.initial_state(), True: fleet.initial_state()}
    work = {False: fleet.new_workspace(), True: fleet.new_workspace()}
    for i in range(n_ticks):
        t_s = i * dt_s
        envs = {}
        for use_numba in (False, True):
            fleet.use_numba = use_numba
            fleet.advance(states[use_numba], t_s, dt_s)
            envs[use_numba] = fleet.flexibility(states[use_numba], t_s, dt_s, work[use_numba])
        for name in ("p_min_kw", "p_max_kw", "p_default_kw"):
            np.testing.assert_allclose(getattr(envs[True], name), getattr(envs[False], name), rtol=TOL, atol=TOL,
                                       err_msg=f"{name} at tick {i}")
        for name in work_fields:
            np.testing.assert_allclose(getattr(work[True], name), getattr(work[False], name), rtol=TOL, atol=TOL,
                                       err_msg=f"work {name} at tick {i}")
        assert np.all(envs[True].p_min_kw <= envs[True].p_default_kw)
        assert np.all(envs[True].p_default_kw <= envs[True].p_max_kw)
        p_set = setpoints(envs[False])
        for use_numba in (False, True):
            fleet.use_numba = use_numba
            fleet.step(states[use_numba], p_set.copy(), t_s, dt_s, envs[use_numba])
        for name in state_fields:
            np.testing.assert_allclose(getattr(states[True], name), getattr(states[False], name), rtol=TOL,
                                       atol=TOL, err_msg=f"state {name} at tick {i}")
