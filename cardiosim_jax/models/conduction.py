"""Lumped SA-node / AV-node / His-Purkinje conduction timing model (time in ms).

A discrete-time event model stepped every ``DT_MS``. Semantics follow
CardioSim 0.1.0 exactly:

* the SA node fires when the time since its last firing reaches
  ``60000 / sa_rate_bpm``;
* a pacing pulse also counts as an SA beat when the ventricle is out of its
  refractory period, but it does *not* move the SA node's last-firing time;
* an SA beat conducts through the AV node unless blocked (probability
  ``conduction_block_prob``) or the AV node is refractory; conduction schedules
  the AV and ventricular activations ``av_delay`` and
  ``av_delay + his_purkinje_delay`` ms in the future;
* each conducted beat records an RR interval: the time since the SA node's
  last *intrinsic* firing, before this step's update (so a paced beat right
  after an intrinsic one records a few ms, the source of CardioSim's huge
  heart rates under over-pacing), or the SA interval if that time is 3 s or
  more. The first beat is recorded only after two SA intervals have elapsed;
* heart rate = 60000 / mean of the last 5 RR intervals (the SA rate before any);
  heart-rate variability = population std of the last 10 (0 before 3 exist).

RR intervals live in a fixed ring of ``RR_BUFFER`` entries, oldest first, so the
state has a static shape and the model jits and vmaps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from cardiosim_jax.models.validation import ParameterRange, validate_parameters

#: Time step of the conduction model (ms).
DT_MS = 1.0
#: RR intervals kept (the HRV window).
RR_BUFFER = 10
#: RR intervals averaged for the heart rate.
HEART_RATE_WINDOW = 5
#: SA-rate clamp applied whenever the rate is set (bpm).
SA_RATE_LIMITS = (30.0, 200.0)
#: An RR interval this long (ms) or longer is replaced by the SA interval.
MAX_RECORDED_RR_MS = 3000.0

PARAMETER_RANGES: dict[str, ParameterRange] = {
    "av_delay": ParameterRange(120.0, 300.0, "ms", "Kusumoto, 2020"),
    "his_purkinje_delay": ParameterRange(30.0, 80.0, "ms", "Kusumoto, 2020"),
    "refractory_period": ParameterRange(200.0, 400.0, "ms", "Malmivuo & Plonsey, 1995"),
    "conduction_block_prob": ParameterRange(0.0, 1.0, "probability per SA beat", "definition"),
}

#: Intrinsic sinus rates CardioSim lists as physiological (bpm).
SA_RATE_RANGE = ParameterRange(40.0, 120.0, "bpm", "Malmivuo & Plonsey, 1995")


@struct.dataclass
class ConductionParams:
    """Conduction delays and refractoriness (ms) and the AV block probability."""

    av_delay: jax.Array = 160.0
    his_purkinje_delay: jax.Array = 50.0
    refractory_period: jax.Array = 300.0
    conduction_block_prob: jax.Array = 0.0


@struct.dataclass
class ConductionState:
    """Clock, node timings (ms), SA rate (bpm) and the RR-interval ring."""

    time_ms: jax.Array
    sa_rate_bpm: jax.Array
    last_sa_fire_ms: jax.Array
    last_av_fire_ms: jax.Array
    last_ventricular_ms: jax.Array
    last_pacing_ms: jax.Array
    rr_intervals_ms: jax.Array  # (RR_BUFFER,), oldest first, newest last
    rr_count: jax.Array  # int32, RR intervals recorded so far
    heart_rate_bpm: jax.Array  # last computed heart rate


@struct.dataclass
class ConductionEvents:
    """What happened during one step."""

    sa_fired: jax.Array
    av_fired: jax.Array
    ventricular_fired: jax.Array
    heart_rate_bpm: jax.Array
    time_since_last_beat_ms: jax.Array


def validate(params: ConductionParams, prefix: str = "") -> None:
    """Raise ``ValueError`` naming any parameter outside ``PARAMETER_RANGES``."""
    validate_parameters(params, PARAMETER_RANGES, prefix=prefix)


def sa_interval_ms(sa_rate_bpm: jax.Array) -> jax.Array:
    """Time between intrinsic SA beats (ms)."""
    return 60000.0 / sa_rate_bpm


def initial_state(sa_rate_bpm: jax.Array, last_sa_fire_ms: jax.Array = -1000.0) -> ConductionState:
    """Clock at 0 with the SA rate clamped to ``SA_RATE_LIMITS``.

    ``last_sa_fire_ms`` places the previous SA beat; CardioSim uses minus the SA
    interval in force *before* the episode's rate is set (-1000 ms for a fresh
    model at its 60 bpm default).
    """
    rate = jnp.clip(jnp.asarray(sa_rate_bpm, jnp.float32), *SA_RATE_LIMITS)
    far_past = jnp.asarray(-1000.0, jnp.float32)
    return ConductionState(
        time_ms=jnp.zeros((), jnp.float32),
        sa_rate_bpm=rate,
        last_sa_fire_ms=jnp.asarray(last_sa_fire_ms, jnp.float32),
        last_av_fire_ms=far_past,
        last_ventricular_ms=far_past,
        last_pacing_ms=far_past,
        rr_intervals_ms=jnp.zeros((RR_BUFFER,), jnp.float32),
        rr_count=jnp.zeros((), jnp.int32),
        heart_rate_bpm=rate,
    )


def set_sa_rate(state: ConductionState, sa_rate_bpm: jax.Array) -> ConductionState:
    """Set the intrinsic SA rate, clamped to ``SA_RATE_LIMITS``."""
    return state.replace(sa_rate_bpm=jnp.clip(sa_rate_bpm, *SA_RATE_LIMITS))


def _recent_mask(rr_count: jax.Array, window: int) -> tuple[jax.Array, jax.Array]:
    """Mask of the newest ``min(window, rr_count)`` ring entries, and that count."""
    n = jnp.minimum(rr_count, window)
    mask = jnp.arange(RR_BUFFER) >= RR_BUFFER - n
    return mask, n


def heart_rate_from_rr(state: ConductionState) -> jax.Array:
    """60000 / mean of the last 5 RR intervals, or the SA rate if none recorded (bpm)."""
    mask, n = _recent_mask(state.rr_count, HEART_RATE_WINDOW)
    mean_rr = jnp.sum(jnp.where(mask, state.rr_intervals_ms, 0.0)) / jnp.maximum(n, 1)
    return jnp.where(n > 0, 60000.0 / jnp.where(n > 0, mean_rr, 1.0), state.sa_rate_bpm)


def heart_rate_variability(state: ConductionState) -> jax.Array:
    """Population standard deviation of the last 10 RR intervals (ms); 0 with fewer than 3."""
    mask, n = _recent_mask(state.rr_count, RR_BUFFER)
    count = jnp.maximum(n, 1).astype(jnp.float32)
    mean = jnp.sum(jnp.where(mask, state.rr_intervals_ms, 0.0)) / count
    sq_dev = jnp.where(mask, (state.rr_intervals_ms - mean) ** 2, 0.0)
    return jnp.where(state.rr_count >= 3, jnp.sqrt(jnp.sum(sq_dev) / count), 0.0)


@struct.dataclass
class SubstepEvents:
    """What :func:`advance` decided: conduction, and the RR interval to record (if any)."""

    sa_fired: jax.Array  # bool
    conducted: jax.Array  # bool: AV and ventricular activation scheduled
    record: jax.Array  # bool: an RR interval is recorded
    rr_ms: jax.Array  # the RR interval recorded when ``record``


def advance(
    state: ConductionState,
    params: ConductionParams,
    pacing_pulse: jax.Array,
    block_draw: jax.Array,
    dt_ms: float = DT_MS,
    interval_ms: jax.Array | None = None,
) -> tuple[ConductionState, SubstepEvents]:
    """:func:`step` without touching the RR ring or the heart rate.

    No decision in a step reads the RR ring or the heart rate (only ``rr_count``
    and the SA rate), so a loop of substeps can carry the cheap scalar state,
    then apply the recorded intervals with :func:`push_rr` and recompute the
    rate with :func:`refresh_heart_rate` once: the same state as a loop of
    :func:`step`, without a 10-wide select and a 5-wide mean on every substep.
    ``rr_count`` is already incremented; ``rr_intervals_ms`` and
    ``heart_rate_bpm`` are stale. ``interval_ms``, if given, must be
    ``sa_interval_ms(state.sa_rate_bpm)``: a loop at constant SA rate passes it
    to divide once instead of once per substep.
    """
    time = state.time_ms + dt_ms
    interval = sa_interval_ms(state.sa_rate_bpm) if interval_ms is None else interval_ms
    time_since_sa = time - state.last_sa_fire_ms

    intrinsic = time_since_sa >= interval
    last_sa = jnp.where(intrinsic, time, state.last_sa_fire_ms)
    paced = pacing_pulse & (time - state.last_ventricular_ms > params.refractory_period)
    sa_fired = intrinsic | paced

    conducted = (
        sa_fired
        & (block_draw > params.conduction_block_prob)
        & (time - state.last_av_fire_ms > params.refractory_period)
    )
    last_av = jnp.where(conducted, time + params.av_delay, state.last_av_fire_ms)
    last_ventricular = jnp.where(
        conducted, time + params.av_delay + params.his_purkinje_delay, state.last_ventricular_ms
    )

    record = conducted & ((state.rr_count > 0) | (time > 2.0 * interval))
    rr = jnp.where(time_since_sa < MAX_RECORDED_RR_MS, time_since_sa, interval)
    new_state = state.replace(
        time_ms=time,
        last_sa_fire_ms=last_sa,
        last_av_fire_ms=last_av,
        last_ventricular_ms=last_ventricular,
        last_pacing_ms=jnp.where(paced, time, state.last_pacing_ms),
        rr_count=state.rr_count + record.astype(jnp.int32),
    )
    return new_state, SubstepEvents(sa_fired=sa_fired, conducted=conducted, record=record, rr_ms=rr)


def push_rr(state: ConductionState, record: jax.Array, rr_ms: jax.Array) -> ConductionState:
    """Append ``rr_ms`` to the RR ring, dropping the oldest, where ``record`` (count unchanged)."""
    # Shift by concatenation (oldest first), selected per patient: no roll, no
    # scatter, and the statistics keep summing oldest to newest.
    shifted = jnp.concatenate([state.rr_intervals_ms[1:], jnp.asarray(rr_ms)[None]])
    return state.replace(rr_intervals_ms=jnp.where(record, shifted, state.rr_intervals_ms))


def push_rrs(state: ConductionState, records: jax.Array, rr_ms: jax.Array) -> ConductionState:
    """:func:`push_rr` for each of ``records[i], rr_ms[i]`` in order, in one pass (exact).

    After the pushes the ring holds the newest ``RR_BUFFER`` of the old ring
    followed by the recorded intervals, oldest first: with ``k`` records,
    slot ``j`` keeps old entry ``j + k`` where that exists, otherwise the
    interval recorded ``RR_BUFFER - 1 - j`` records before the last. Only
    selects, no arithmetic on the intervals, so the ring is bit-for-bit what
    the sequential pushes give; but where ten chained pushes each re-read the
    whole ring (XLA:CPU duplicated every shift into every later one: about 55
    reads of the ring per env step at a large batch), this reads it once.
    """
    ring = state.rr_intervals_ms
    n_records = records.shape[0]
    count = jnp.sum(records.astype(jnp.int32))  # k
    # Old entries move k slots towards the front; those moved past it are dropped.
    shifted = ring
    for k in range(1, min(n_records, RR_BUFFER) + 1):
        moved = jnp.concatenate([ring[k:], jnp.zeros((k,), ring.dtype)])
        shifted = jnp.where(count == k, moved, shifted)
    # Record i lands in slot RR_BUFFER - k + (records before it); negative slots fall out.
    slots = jnp.arange(RR_BUFFER, dtype=jnp.int32)
    rank = jnp.cumsum(records.astype(jnp.int32)) - 1
    ring = shifted
    for i in range(n_records):
        lands_here = records[i] & (slots == RR_BUFFER - count + rank[i])
        ring = jnp.where(lands_here, rr_ms[i], ring)
    return state.replace(rr_intervals_ms=ring)


def refresh_heart_rate(state: ConductionState) -> ConductionState:
    """``state`` with ``heart_rate_bpm`` recomputed from its RR ring (bpm)."""
    return state.replace(heart_rate_bpm=heart_rate_from_rr(state))


def step(
    state: ConductionState,
    params: ConductionParams,
    pacing_pulse: jax.Array,
    block_draw: jax.Array,
    dt_ms: float = DT_MS,
) -> tuple[ConductionState, ConductionEvents]:
    """Advance the clock by ``dt_ms``.

    Args:
        pacing_pulse: bool, whether a pacing pulse is delivered this step.
        block_draw: a U(0, 1) draw; the SA beat conducts if it exceeds
            ``params.conduction_block_prob``.
    """
    new_state, substep = advance(state, params, pacing_pulse, block_draw, dt_ms)
    new_state = refresh_heart_rate(push_rr(new_state, substep.record, substep.rr_ms))
    events = ConductionEvents(
        sa_fired=substep.sa_fired,
        av_fired=substep.conducted,
        ventricular_fired=substep.conducted,
        heart_rate_bpm=new_state.heart_rate_bpm,
        time_since_last_beat_ms=new_state.time_ms - new_state.last_ventricular_ms,
    )
    return new_state, events
