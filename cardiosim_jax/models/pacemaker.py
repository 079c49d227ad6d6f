"""Beat-by-beat timing of a bradycardic heart with a single-chamber demand pacemaker (times in ms).

An event-driven model: within one call of :func:`advance` the next event (of
three kinds) is found, the clocks jump to it, and it is processed, for at most
``max_events`` events (a short ``lax.scan``). The events:

* **P wave** (sinus depolarisation of the atria). The next P-P interval is

      PP = 60000 / sinus_rate + A_rsa * sin(2 pi t / T_resp) + sigma_jitter * N(0, 1)

  clipped to [``MIN_PP_MS``, ``MAX_PP_MS``]: respiratory sinus arrhythmia
  (Hirsch & Bishop 1981) plus beat-to-beat jitter. The P wave conducts to the
  ventricles after the PR interval unless blocked (probability
  ``av_block_prob``, a Mobitz II-like non-conducted P wave, and always within
  ``AV_NODE_REFRACTORY_MS`` of a ventricular depolarisation: the AV node is
  refractory after a beat, including by concealed retrograde penetration after a
  pace). With
  ``atrial_tracking`` (NBG mode VDD, Bernstein et al. 2002) the device also
  schedules a ventricular pace ``pacing_av_delay_ms`` after every P wave.
* **Conducted ventricular activation**: depolarises the ventricle unless it
  is refractory (less than ``ventricular_refractory_ms`` since the last
  depolarisation: concealed conduction after a captured pace). A
  depolarisation is sensed by the device, which restarts its escape timer and
  cancels a tracked pace (inhibition).
* **Pace**: the escape pace (no sensed ventricular event for 60000 / LRL ms,
  NBG mode VVI) or a tracked pace. It draws the energy
  ``amplitude^2 * pulse_width / lead_impedance`` (:func:`pulse_energy_uj`) and
  restarts the escape timer whether or not it captures. Capture is
  probabilistic near threshold: this pulse's threshold is the mean threshold
  times ``exp(threshold_beat_cv * z)``, ``z ~ N(0, 1)`` (beat-to-beat
  fluctuation of excitability), so

      p(capture) = Phi(ln(amplitude / threshold) / threshold_beat_cv)

  a probit in the amplitude-to-threshold ratio; and only an excitable
  (non-refractory) ventricle captures. A pulse of more than 0 V that meets an
  excitable ventricle and fails is a loss of capture.
  A captured pace conducts retrogradely (ventriculo-atrial, VA) to the atria
  after ``retrograde_va_ms`` with probability ``retrograde_conduction_prob``
  per beat (0 in a patient without VA conduction), unless the AV node is still
  refractory from a P wave (within ``AV_NODE_REFRACTORY_MS``, as after every
  P-tracked pace); it resets the sinus node. In a patient with VA conduction,
  pacing faster than the sinus rate therefore suppresses it (overdrive
  suppression); without it, sinus beats emerge as soon as the sinus rate
  exceeds the lower rate.

RR intervals are measured between consecutive ventricular depolarisations
(conducted or captured) and kept in a ring of ``RR_BUFFER``. Heart rate =
60000 / mean of the last ``HEART_RATE_WINDOW`` RR intervals, or 60000 / the
open interval once a beat is overdue by half (a pause, asystole). Heart-rate
variability = population SD of the ``RR_BUFFER`` intervals (a short-window
SDNN, Task Force ESC/NASPE 1996).

The capture threshold follows the strength-duration curve (Lapicque 1907;
Weiss 1901), with rheobase and chronaxie ``c``:

    V_th(pw) = rheobase * (1 + c / pw)

(:func:`strength_duration_threshold_v`; parameterised by the threshold at the
0.4 ms reference width), and rises with lead maturation / exit block:

    threshold(t) = threshold_0 * (1 + rise * (1 - exp(-t / tau)))

(acute-to-peak rise of 2-3x, Ellenbogen et al. 2011; compressed in time).
Time spent more than ``pause_threshold_ms`` after the last ventricular
depolarisation is accumulated as pause time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from cardiosim_jax.models import prng
from cardiosim_jax.models.validation import ParameterRange, validate_parameters

#: RR intervals kept (the HRV window, beats).
RR_BUFFER = 8
#: RR intervals averaged for the heart rate (beats).
HEART_RATE_WINDOW = 4
#: A beat this many mean RR intervals overdue counts as a pause in the heart rate.
PAUSE_FACTOR = 1.5
#: Sinus P-P interval bounds (ms): 150 and 20 bpm.
MIN_PP_MS = 400.0
MAX_PP_MS = 3000.0
#: Time-since-beat clock saturates here (ms); longer is asystole anyway.
MAX_SINCE_BEAT_MS = 10000.0
#: AV-nodal refractory period (ms): a pace this soon after a P wave does not conduct retrogradely.
AV_NODE_REFRACTORY_MS = 400.0
#: Stand-in time for "no event scheduled" (ms); finite so the state stays finite.
NO_EVENT_MS = 1.0e6
#: Pulse width at which ``capture_threshold_v`` is specified (ms): the usual nominal width.
REFERENCE_PULSE_WIDTH_MS = 0.4
#: A ventricular pause longer than this is clinically significant (ms; Kusumoto et al. 2019).
PAUSE_THRESHOLD_MS = 2000.0

PARAMETER_RANGES: dict[str, ParameterRange] = {
    "pr_interval_ms": ParameterRange(
        120.0, 300.0, "ms", "Kusumoto et al. 2019 (normal PR 120-200 ms, 1st-degree block > 200)"
    ),
    "av_block_prob": ParameterRange(
        0.0, 0.9, "probability per P wave", "Mobitz II / intermittent block (Kusumoto et al. 2019)"
    ),
    "ventricular_refractory_ms": ParameterRange(
        200.0, 350.0, "ms", "Ellenbogen et al. 2011; Malmivuo & Plonsey 1995"
    ),
    "capture_threshold_v": ParameterRange(
        0.3, 3.0, "V at 0.4 ms", "Ellenbogen et al. 2011; Kusumoto & Goldschlager 1996"
    ),
    "chronaxie_ms": ParameterRange(
        0.1, 1.5, "ms", "strength-duration chronaxie of pacing leads (Ellenbogen et al. 2011)"
    ),
    "pulse_width_ms": ParameterRange(
        0.1, 1.5, "ms", "programmable pulse widths, nominal 0.4 (Ellenbogen et al. 2011)"
    ),
    "lead_impedance_ohm": ParameterRange(
        200.0, 2000.0, "ohm", "pacing impedance, normal about 300-1500 (Ellenbogen et al. 2011)"
    ),
    "threshold_beat_cv": ParameterRange(
        0.0, 0.3, "relative SD", "design (narrow zone of intermittent capture in threshold tests)"
    ),
    "retrograde_conduction_prob": ParameterRange(
        0.0, 1.0, "probability per captured beat", "design (intermittent VA conduction)"
    ),
    "threshold_rise_fraction": ParameterRange(
        0.0, 2.0, "fraction of threshold_0", "lead maturation peak 2-3x (Ellenbogen et al. 2011)"
    ),
    "threshold_rise_time_s": ParameterRange(
        30.0, 3000.0, "s", "design (weeks of maturation compressed into an episode)"
    ),
    "rsa_amplitude_ms": ParameterRange(0.0, 100.0, "ms", "Hirsch & Bishop 1981; Nunan et al. 2010"),
    "respiratory_period_s": ParameterRange(
        2.5, 6.0, "s", "adult breathing 10-24 /min (Hirsch & Bishop 1981)"
    ),
    "rr_jitter_ms": ParameterRange(0.0, 40.0, "ms", "Task Force ESC/NASPE 1996; Nunan et al. 2010"),
    "retrograde_va_ms": ParameterRange(
        100.0, 400.0, "ms", "retrograde VA conduction times (Ellenbogen et al. 2011)"
    ),
    "pacing_av_delay_ms": ParameterRange(100.0, 300.0, "ms", "Ellenbogen et al. 2011"),
    "atrial_tracking": ParameterRange(
        0.0, 1.0, "flag (0 VVI, 1 VDD)", "NBG code, Bernstein et al. 2002"
    ),
}


@struct.dataclass
class PacedHeartParams:
    """Patient conduction/capture physiology and the device's fixed programming."""

    pr_interval_ms: jax.Array = 160.0  # P wave to ventricular activation
    av_block_prob: jax.Array = 0.0  # P(a P wave does not conduct)
    ventricular_refractory_ms: jax.Array = 280.0  # effective refractory period
    capture_threshold_v: jax.Array = 1.0  # mean threshold at episode start, 0.4 ms pulse
    chronaxie_ms: jax.Array = 0.4  # pulse width at which the threshold is twice the rheobase
    pulse_width_ms: jax.Array = 0.4  # programmed pulse width (device)
    lead_impedance_ohm: jax.Array = 500.0  # pacing impedance
    threshold_beat_cv: jax.Array = 0.05  # beat-to-beat relative SD of the threshold
    threshold_rise_fraction: jax.Array = 0.0  # asymptotic rise, fraction of the initial value
    threshold_rise_time_s: jax.Array = 300.0  # time constant of the rise
    rsa_amplitude_ms: jax.Array = 25.0  # respiratory modulation of the P-P interval
    respiratory_period_s: jax.Array = 4.0  # 15 breaths/min
    rr_jitter_ms: jax.Array = 0.0  # beat-to-beat SD of the P-P interval
    retrograde_va_ms: jax.Array = 200.0  # paced ventricle to retrograde atrial activation
    retrograde_conduction_prob: jax.Array = 1.0  # P(a captured beat conducts VA); 0: no VA
    pacing_av_delay_ms: jax.Array = 180.0  # programmed sensed-AV delay (VDD)
    atrial_tracking: jax.Array = 0.0  # > 0.5: VDD (pace after each P wave), else VVI


@struct.dataclass
class PacemakerState:
    """Clocks relative to now (ms) and the RR ring (ms, oldest first)."""

    to_next_p_ms: jax.Array  # until the next sinus P wave
    since_p_ms: jax.Array  # since the last P wave
    to_conducted_ms: jax.Array  # until a conducted activation reaches the ventricle
    to_tracked_pace_ms: jax.Array  # until a P-tracked pace (VDD)
    since_beat_ms: jax.Array  # since the last ventricular depolarisation
    since_timer_ms: jax.Array  # since the device's escape timer last restarted
    rr_intervals_ms: jax.Array  # (RR_BUFFER,)


@struct.dataclass
class PacingCounts:
    """What happened during one :func:`advance` call."""

    paces: jax.Array  # pulses delivered
    captures: jax.Array  # pulses that depolarised the ventricle
    sensed: jax.Array  # conducted (intrinsic) ventricular depolarisations
    lost: jax.Array  # pulses (> 0 V) that met an excitable ventricle and did not capture
    energy_uj: jax.Array  # energy drawn by the delivered pulses (microjoules)
    pause_ms: jax.Array  # time spent more than pause_threshold_ms after the last beat
    longest_interval_ms: jax.Array  # longest time without a ventricular depolarisation seen


def zero_counts() -> PacingCounts:
    """Counts of an interval in which nothing happened."""
    zero = jnp.zeros((), jnp.float32)
    return PacingCounts(
        paces=zero,
        captures=zero,
        sensed=zero,
        lost=zero,
        energy_uj=zero,
        pause_ms=zero,
        longest_interval_ms=zero,
    )


def validate(params: PacedHeartParams, prefix: str = "") -> None:
    """Raise ``ValueError`` naming any parameter outside ``PARAMETER_RANGES``."""
    validate_parameters(params, PARAMETER_RANGES, prefix=prefix)


def initial_state(sinus_rate_bpm: jax.Array) -> PacemakerState:
    """Mid-cycle of a steady sinus rhythm: RR ring full of the sinus interval, no pending events."""
    interval = 60000.0 / jnp.asarray(sinus_rate_bpm, jnp.float32)
    half = 0.5 * interval
    return PacemakerState(
        to_next_p_ms=half,
        since_p_ms=half,
        to_conducted_ms=jnp.asarray(NO_EVENT_MS, jnp.float32),
        to_tracked_pace_ms=jnp.asarray(NO_EVENT_MS, jnp.float32),
        since_beat_ms=half,
        since_timer_ms=half,
        rr_intervals_ms=jnp.full((RR_BUFFER,), interval, jnp.float32),
    )


def strength_duration_threshold_v(
    threshold_at_reference_v: jax.Array, chronaxie_ms: jax.Array, pulse_width_ms: jax.Array
) -> jax.Array:
    """Threshold (V) at ``pulse_width_ms`` on the Lapicque curve V = rheobase (1 + c / pw),
    given the threshold at ``REFERENCE_PULSE_WIDTH_MS`` and the chronaxie ``c`` (ms)."""
    rheobase = threshold_at_reference_v / (1.0 + chronaxie_ms / REFERENCE_PULSE_WIDTH_MS)
    return rheobase * (1.0 + chronaxie_ms / pulse_width_ms)


def capture_threshold_v(params: PacedHeartParams, time_s: jax.Array) -> jax.Array:
    """Mean capture threshold (V) at the programmed pulse width after ``time_s`` seconds
    of lead maturation."""
    rise = 1.0 - jnp.exp(-time_s / params.threshold_rise_time_s)
    at_reference = params.capture_threshold_v * (1.0 + params.threshold_rise_fraction * rise)
    return strength_duration_threshold_v(at_reference, params.chronaxie_ms, params.pulse_width_ms)


def capture_probability(amplitude_v: jax.Array, threshold_v: jax.Array, cv: jax.Array) -> jax.Array:
    """P(one pulse captures an excitable ventricle): Phi(ln(amplitude / threshold) / cv)."""
    ratio = jnp.log(jnp.maximum(amplitude_v, 1e-6) / threshold_v)
    sharp = jnp.where(ratio > 0.0, 1.0, 0.0)
    smooth = jax.scipy.stats.norm.cdf(ratio / jnp.maximum(cv, 1e-6))
    return jnp.where(cv > 0.0, smooth, sharp) * (amplitude_v > 0.0)


def pulse_energy_uj(
    amplitude_v: jax.Array, pulse_width_ms: jax.Array, impedance_ohm: jax.Array
) -> jax.Array:
    """Energy of one constant-voltage pulse, V^2 pw / R (microjoules)."""
    return 1000.0 * jnp.square(amplitude_v) * pulse_width_ms / impedance_ohm


def heart_rate_bpm(state: PacemakerState) -> jax.Array:
    """60000 / mean recent RR, or 60000 / the open interval during a pause (bpm)."""
    mean_rr = jnp.mean(state.rr_intervals_ms[-HEART_RATE_WINDOW:])
    pause = state.since_beat_ms > PAUSE_FACTOR * mean_rr
    return 60000.0 / jnp.where(pause, state.since_beat_ms, mean_rr)


def heart_rate_variability_ms(state: PacemakerState) -> jax.Array:
    """Population SD of the last ``RR_BUFFER`` RR intervals (ms)."""
    # Centre on the newest interval first: exact 0 for a fixed rate, and less cancellation.
    deviation = state.rr_intervals_ms - state.rr_intervals_ms[-1]
    return jnp.sqrt(jnp.mean(jnp.square(deviation - jnp.mean(deviation))))


def _later(clock: jax.Array, dt: jax.Array) -> jax.Array:
    """A relative event time ``dt`` later; "no event" stays exactly ``NO_EVENT_MS``."""
    return jnp.where(clock >= NO_EVENT_MS, NO_EVENT_MS, clock - dt)


def advance(
    state: PacemakerState,
    params: PacedHeartParams,
    sinus_rate_bpm: jax.Array,
    lower_rate_bpm: jax.Array,
    amplitude_v: jax.Array,
    threshold_v: jax.Array,
    clock_ms: jax.Array,
    key: jax.Array,
    duration_ms: float,
    max_events: int,
    pause_threshold_ms: float = PAUSE_THRESHOLD_MS,
) -> tuple[PacemakerState, PacingCounts]:
    """Advance ``duration_ms`` with the device at ``lower_rate_bpm`` and ``amplitude_v``.

    Args:
        sinus_rate_bpm: intrinsic (sinus) rate, constant over the call.
        threshold_v: mean capture threshold at the programmed pulse width, constant
            over the call; each pulse's own threshold fluctuates around it.
        clock_ms: time since the episode began, for the respiratory phase.
        key: randomness for AV block, P-P jitter, capture and VA conduction.
        max_events: bound on events processed; a later one fires at the start
            of the next call (with the model's rate limits 16 covers 2 s).
        pause_threshold_ms: time after a beat from which pause time accumulates.
    """
    escape_ms = 60000.0 / lower_rate_bpm
    base_pp_ms = 60000.0 / sinus_rate_bpm
    tracking = params.atrial_tracking > 0.5
    energy_per_pulse = pulse_energy_uj(
        amplitude_v, params.pulse_width_ms, params.lead_impedance_ohm
    )
    omega = 2.0 * jnp.pi / (1000.0 * params.respiratory_period_s)
    # All draws up front: one fused hash over the events instead of several per iteration.
    key_block, key_jitter, key_capture, key_retro = prng.split(key, 4)
    block_draws = prng.uniform(key_block, (max_events,))
    jitters = params.rr_jitter_ms * prng.normal(key_jitter, (max_events,))
    # Each pulse meets its own threshold (beat-to-beat fluctuation, log-normal).
    pulse_thresholds = threshold_v * jnp.exp(
        params.threshold_beat_cv * prng.normal(key_capture, (max_events,))
    )
    retro_draws = prng.uniform(key_retro, (max_events,))

    def body(carry, draws):
        st, now, counts = carry
        block_draw, jitter, pulse_threshold, retro_draw = draws
        to_escape = escape_ms - st.since_timer_ms
        to_pace = jnp.minimum(to_escape, st.to_tracked_pace_ms)
        to_next = jnp.maximum(
            jnp.minimum(jnp.minimum(st.to_next_p_ms, st.to_conducted_ms), to_pace), 0.0
        )
        fire = to_next < duration_ms - now
        dt = jnp.where(fire, to_next, 0.0)
        is_p = fire & (st.to_next_p_ms <= st.to_conducted_ms) & (st.to_next_p_ms <= to_pace)
        is_conducted = fire & ~is_p & (st.to_conducted_ms <= to_pace)
        is_pace = fire & ~is_p & ~is_conducted
        now = now + dt
        since_beat = st.since_beat_ms + dt
        since_timer = st.since_timer_ms + dt
        since_p = st.since_p_ms + dt
        to_p = st.to_next_p_ms - dt
        to_conducted = _later(st.to_conducted_ms, dt)
        to_tracked = _later(st.to_tracked_pace_ms, dt)
        pause = _pause_overlap_ms(st.since_beat_ms, since_beat, pause_threshold_ms)

        # P wave: conduct (or block), track, and schedule the next one.
        # A P wave soon after a ventricular depolarisation finds the AV node refractory
        # (concealed retrograde penetration after a pace, or the last antegrade beat).
        conducts = (block_draw >= params.av_block_prob) & (since_beat > AV_NODE_REFRACTORY_MS)
        next_pp = base_pp_ms + params.rsa_amplitude_ms * jnp.sin(omega * (clock_ms + now)) + jitter
        next_pp = jnp.clip(next_pp, MIN_PP_MS, MAX_PP_MS)
        to_p = jnp.where(is_p, next_pp, to_p)
        since_p = jnp.where(is_p, 0.0, since_p)
        to_conducted = jnp.where(is_p & conducts, params.pr_interval_ms, to_conducted)
        to_tracked = jnp.where(is_p & tracking, params.pacing_av_delay_ms, to_tracked)

        excitable = since_beat > params.ventricular_refractory_ms
        sensed = is_conducted & excitable
        delivered = is_pace & (amplitude_v > 0.0)
        above = amplitude_v > pulse_threshold
        captured = delivered & above & excitable
        lost = delivered & ~above & excitable
        beat = sensed | captured
        # Retrograde activation of excitable atria resets the sinus node (overdrive
        # suppression); only in a patient with VA conduction, and not on every beat.
        conducts_back = retro_draw < params.retrograde_conduction_prob
        retrograde = captured & conducts_back & (since_p > AV_NODE_REFRACTORY_MS)
        to_p = jnp.where(retrograde, params.retrograde_va_ms + next_pp, to_p)
        since_p = jnp.where(retrograde, -params.retrograde_va_ms, since_p)
        to_conducted = jnp.where(is_conducted, NO_EVENT_MS, to_conducted)
        # A pace or a sensed beat restarts the escape timer and ends a tracked pace.
        restart = is_pace | sensed
        to_tracked = jnp.where(restart, NO_EVENT_MS, to_tracked)
        since_timer = jnp.where(restart, 0.0, since_timer)

        rr = st.rr_intervals_ms
        shifted = jnp.concatenate([rr[1:], jnp.minimum(since_beat, MAX_SINCE_BEAT_MS)[None]])
        st = PacemakerState(
            to_next_p_ms=to_p,
            since_p_ms=since_p,
            to_conducted_ms=to_conducted,
            to_tracked_pace_ms=to_tracked,
            since_beat_ms=jnp.where(beat, 0.0, since_beat),
            since_timer_ms=since_timer,
            rr_intervals_ms=jnp.where(beat, shifted, rr),
        )
        counts = PacingCounts(
            paces=counts.paces + delivered,
            captures=counts.captures + captured,
            sensed=counts.sensed + sensed,
            lost=counts.lost + lost,
            energy_uj=counts.energy_uj + jnp.where(delivered, energy_per_pulse, 0.0),
            pause_ms=counts.pause_ms + pause,
            longest_interval_ms=jnp.maximum(counts.longest_interval_ms, since_beat),
        )
        return (st, now, counts), None

    # The per-event draws are the loop's scanned input: under vmap each event reads one
    # contiguous row of the batch, not a strided column of a patient-major array.
    (st, now, counts), _ = jax.lax.scan(
        body,
        (state, jnp.zeros((), jnp.float32), zero_counts()),
        (block_draws, jitters, pulse_thresholds, retro_draws),
    )
    # Run the clocks on to the end of the interval (events left over fire next call).
    rest = duration_ms - now
    since_beat_end = st.since_beat_ms + rest
    counts = counts.replace(
        pause_ms=counts.pause_ms
        + _pause_overlap_ms(st.since_beat_ms, since_beat_end, pause_threshold_ms),
        longest_interval_ms=jnp.minimum(
            jnp.maximum(counts.longest_interval_ms, since_beat_end), MAX_SINCE_BEAT_MS
        ),
    )
    st = st.replace(
        to_next_p_ms=st.to_next_p_ms - rest,
        since_p_ms=jnp.minimum(st.since_p_ms + rest, MAX_SINCE_BEAT_MS),
        to_conducted_ms=_later(st.to_conducted_ms, rest),
        to_tracked_pace_ms=_later(st.to_tracked_pace_ms, rest),
        since_beat_ms=jnp.minimum(since_beat_end, MAX_SINCE_BEAT_MS),
        since_timer_ms=jnp.minimum(st.since_timer_ms + rest, MAX_SINCE_BEAT_MS),
    )
    return st, counts


def _pause_overlap_ms(before_ms: jax.Array, after_ms: jax.Array, threshold_ms: float) -> jax.Array:
    """Part of the interval [before, after] since the last beat that lies beyond the threshold."""
    return jnp.maximum(after_ms - jnp.maximum(before_ms, threshold_ms), 0.0)


def log_threshold_drift_step(
    drift: jax.Array, drift_sd: jax.Array, noise: jax.Array, dt_s: float, drift_time_s: float
) -> jax.Array:
    """Ornstein-Uhlenbeck step of the slow log-threshold fluctuation (stationary SD
    ``drift_sd``, time constant ``drift_time_s``; ``noise`` ~ N(0, 1))."""
    rho = jnp.exp(-dt_s / drift_time_s)
    return rho * drift + drift_sd * jnp.sqrt(1.0 - rho * rho) * noise


def sinus_rate_step(
    level_bpm: jax.Array,
    drift_bpm: jax.Array,
    target_level_bpm: jax.Array,
    drift_sd_bpm: jax.Array,
    noise: jax.Array,
    dt_s: float,
    relax_time_s: float,
    drift_time_s: float,
) -> tuple[jax.Array, jax.Array]:
    """Autonomic sinus-rate dynamics over ``dt_s``: the level relaxes to ``target_level_bpm``
    (first order, ``relax_time_s``) and a slow drift follows an Ornstein-Uhlenbeck process
    with stationary SD ``drift_sd_bpm`` (``noise`` ~ N(0, 1)). Returns (level, drift) in bpm.
    """
    relax = jnp.exp(-dt_s / relax_time_s)
    rho = jnp.exp(-dt_s / drift_time_s)
    level = target_level_bpm + (level_bpm - target_level_bpm) * relax
    drift = rho * drift_bpm + drift_sd_bpm * jnp.sqrt(1.0 - rho * rho) * noise
    return level, drift
