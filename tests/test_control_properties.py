"""Properties of the advisory controller over arbitrary DO histories (hypothesis)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from bptwin.twin.control import O2_FLOW, STIRRER, AdvisoryController, ControlConfig, Setpoints
from tests.control_states import make_state

do_values = st.one_of(st.floats(min_value=0.0, max_value=120.0, allow_nan=False), st.just(math.nan))


@settings(max_examples=60, deadline=None)
@given(
    dos=st.lists(do_values, min_size=1, max_size=120),
    slopes=st.lists(st.floats(min_value=-400.0, max_value=400.0), min_size=1, max_size=5),
    rq=st.floats(min_value=0.3, max_value=1.5),
)
def test_followed_advice_stays_in_the_sop_limits_and_never_chatters(dos, slopes, rq) -> None:
    config = ControlConfig()
    controller = AdvisoryController(config)
    setpoints = Setpoints(500.0, 0.0)
    last_up = -math.inf
    last_change = -math.inf
    for index, do in enumerate(dos):
        state = make_state(index, do, do_slope=slopes[index % len(slopes)], rq=rq)
        recs = controller.update(state, setpoints)
        assert len({rec.parameter for rec in recs}) == len(recs)
        for rec in recs:
            assert rec.reason and 0.0 <= rec.confidence <= 1.0
            assert rec.current == setpoints.get(rec.parameter)
            if not rec.is_change:
                continue
            step = abs(rec.recommended - rec.current)
            expected = config.stirrer_step_rpm if rec.parameter == STIRRER else config.o2_step_l_min
            assert math.isclose(step, expected, abs_tol=1e-9)
            now = rec.timestamp
            if rec.direction > 0:
                assert now - last_change >= config.critical_step_interval_s
                last_up = now
            else:
                assert now - last_up >= config.reversal_hold_s
                assert not math.isnan(do) and do > config.o2_release_pct
            last_change = now
            values = {STIRRER: setpoints.stirrer_speed, O2_FLOW: setpoints.o2_flow}
            values[rec.parameter] = rec.recommended
            setpoints = Setpoints(**values)
        assert config.stirrer_min_rpm <= setpoints.stirrer_speed <= config.stirrer_max_rpm
        assert 0.0 <= setpoints.o2_flow <= config.o2_max_l_min + 1e-9
        # O2 only once the stirrer is at its limit; a stirrer step down only without O2.
        if setpoints.o2_flow > 0:
            assert setpoints.stirrer_speed == config.stirrer_max_rpm
