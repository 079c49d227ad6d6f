"""Fibrillating Aliev-Panfilov ring, its pseudo-ECG and AMSA; myocardial perfusion and energy.

**Ring** (Aliev & Panfilov 1996, monodomain cable closed into a ring of
``N_CELLS`` cells, explicit Euler with ``DT`` model time units)::

    du_i/dt = -k_i u_i (u_i - a_i)(u_i - 1) - u_i v_i + D (u_{i-1} - 2 u_i + u_{i+1}) + I_i
    dv_i/dt = (epsilon_0 + mu_1 v_i / (u_i + mu_2)) (-v_i - k_i u_i (u_i - a_i - 1))

Ischaemia silences the ring: cell ``i`` is viable with weight
``s_i = sigmoid((m - theta_i) / 0.05)``, where ``m`` in [0, 1] is the myocardial
energy state and the thresholds ``theta_i`` grow from 0.1 to 0.9 around the
ring (a contiguous ischaemic zone that spreads as ``m`` falls). An ischaemic
cell loses excitability, ``k_i = k (kappa + (1 - kappa) s_i)``, and its
threshold rises, ``a_i = a + (a_isch - a)(1 - s_i)`` (a >= 1/2 stops a
bistable front; Keener & Sneyd 2009). Fibrillation is sustained by ectopic
foci firing in viable tissue (3-cell pulses at random sites,
``ectopic_rate_hz``) colliding with re-entrant wavelets, so the signal stays
irregular while the heart fibrillates; it fades to fine VF and asystole as
``m`` falls.

**Pseudo-ECG**: the dipole of the spatial gradient projected on one lead axis,
``phi = sum_i cos(2 pi (i + 1/2) / N) (u_{i+1} - u_i)`` (mV at unit gain),
sampled every ``SAMPLE_DT`` model time units (1 unit = 12.9 ms, Aliev &
Panfilov 1996: 6.45 ms, 155 Hz).

**AMSA** (amplitude spectrum area; Marn-Pernat et al. 2001 Crit Care Med;
Young et al. 2004 Crit Care Med; Ristagno et al. 2015 Resuscitation) over a
``WINDOW``-sample (413 ms) window: ``AMSA = sum_k A_k f_k`` over the DFT bins
with 2 <= f_k <= 48 Hz, ``A_k = 2 |X_k| / WINDOW`` (mV), in mV x Hz.

**Feature library.** Simulating the ring inside every environment step costs
~80x a v0 step (measured), so :func:`feature_library` runs the ring once per
process at ``LIBRARY_LEVELS`` energy levels for ``LIBRARY_WINDOWS`` steps and
tabulates AMSA and peak-to-peak amplitude; an environment reads the table at
its patient's ``m`` (linear in ``m``) and its own window index.

**Perfusion and energy** per clinical interval (seconds, exact exponentials)::

    dc/dt = (c_target - c) / tau_c,   c_target = cpr_quality with CPR, 0 in pauses
    dm/dt = c (1 - m) / tau_recovery - (1 - c) m / tau_ischaemia

``c`` is coronary perfusion (fraction of normal; Paradis et al. 1990 JAMA: it
builds over a minute of CPR and collapses in pauses), ``m`` the myocardial
energy state, which decays over minutes of untreated VF (Kern et al. 1990)
and recovers with CPR (Ristagno et al. 2007 Chest: AMSA rises with CPR).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from cardiosim_jax.models import aliev_panfilov as ap
from cardiosim_jax.models import prng
from cardiosim_jax.models.validation import ParameterRange, validate_parameters

#: Cells on the ring.
N_CELLS = 32
#: Euler step (model time units): dt x (k (1 - a) + 4 D) < 2 near the excited state.
DT = 0.125
#: Euler substeps per ECG sample.
SUBSTEPS_PER_SAMPLE = 4
#: Model time between ECG samples.
SAMPLE_DT = DT * SUBSTEPS_PER_SAMPLE
#: ECG samples per simulated step (the window slides by this much).
SAMPLES_PER_STEP = 16
#: ECG samples in the spectral window.
WINDOW = 64
#: Milliseconds per Aliev-Panfilov time unit (Aliev & Panfilov 1996).
MS_PER_TIME_UNIT = 12.9
#: ECG sampling rate (Hz).
SAMPLE_RATE_HZ = 1000.0 / (SAMPLE_DT * MS_PER_TIME_UNIT)
#: AMSA frequency band (Hz), as in the clinical literature.
AMSA_BAND_HZ = (2.0, 48.0)
#: Width of the viability sigmoid in m.
VIABILITY_WIDTH = 0.05
#: An ectopic focus stimulates this many cells either side of its site for one sample.
FOCUS_HALF_WIDTH = 1
#: Focal stimulus current (excites a resting viable cell within one sample).
FOCUS_CURRENT = 1.5
#: Feature library: energy levels on [0, 1], steps per level, warm-up steps discarded.
LIBRARY_LEVELS = 33
LIBRARY_WINDOWS = 256
LIBRARY_WARMUP = 32
#: u and v stay in ap.U_CLAMP / ap.V_CLAMP, so |phi| <= N_CELLS x 1.6 at unit gain.
ECG_BOUND = N_CELLS * (ap.U_CLAMP[1] - ap.U_CLAMP[0])

RING_PARAMETER_RANGES: dict[str, ParameterRange] = {
    "k": ParameterRange(4.0, 12.0, "dimensionless", "Aliev & Panfilov, 1996"),
    "a": ParameterRange(0.05, 0.2, "dimensionless", "Aliev & Panfilov, 1996"),
    "epsilon_0": ParameterRange(
        0.001, 0.01, "1/model time unit (12.9 ms)", "Aliev & Panfilov, 1996"
    ),
    "mu_1": ParameterRange(0.1, 0.3, "dimensionless", "Aliev & Panfilov, 1996"),
    "mu_2": ParameterRange(0.2, 0.4, "dimensionless", "Aliev & Panfilov, 1996"),
    "diffusion": ParameterRange(
        0.5, 1.5, "cells^2/time unit", "Aliev & Panfilov, 1996 (D = 1); Euler stability"
    ),
    "ischaemic_threshold": ParameterRange(
        0.4, 0.6, "dimensionless", "front stops for a >= 1/2, Keener & Sneyd 2009"
    ),
    "ischaemic_excitability": ParameterRange(
        0.1, 0.5, "fraction", "ischaemic loss of excitability, Kleber & Rudy 2004 Physiol Rev"
    ),
    "ectopic_rate_hz": ParameterRange(
        5.0, 30.0, "Hz", "VF activation rates 4-10 Hz per site, Zipes & Jalife 2014"
    ),
}

PARAMETER_RANGES: dict[str, ParameterRange] = {
    "ecg_gain_mv": ParameterRange(
        0.5, 2.0, "mV", "VF amplitude 0.1-1.5 mV between patients, Povoas et al. 2002"
    ),
    "ischaemia_time_constant_s": ParameterRange(
        180.0, 720.0, "s", "VF amplitude and AMSA decline over 5-10 min, Povoas et al. 2002"
    ),
    "recovery_time_constant_s": ParameterRange(
        60.0, 240.0, "s", "AMSA rise over 1-3 min of CPR, Ristagno et al. 2007 Chest"
    ),
    "perfusion_time_constant_s": ParameterRange(
        10.0, 60.0, "s", "coronary perfusion build-up in CPR, Paradis et al. 1990 JAMA"
    ),
    "cpr_quality": ParameterRange(
        0.1, 1.0, "fraction of normal", "CPR flow 20-40 % of normal or more, Paradis et al. 1990"
    ),
}


@struct.dataclass
class RingParams:
    """Aliev-Panfilov ring used to build the feature library (dimensionless unless noted)."""

    k: jax.Array = 8.0
    a: jax.Array = 0.15
    epsilon_0: jax.Array = 0.01  # short APD of fibrillating myocardium
    mu_1: jax.Array = 0.2
    mu_2: jax.Array = 0.3
    diffusion: jax.Array = 1.25  # D / dx^2, per model time unit
    ischaemic_threshold: jax.Array = 0.5  # excitation threshold of an ischaemic cell
    ischaemic_excitability: jax.Array = 0.3  # fraction of k left in an ischaemic cell
    ectopic_rate_hz: jax.Array = 15.5  # focal discharges attempted per second


@struct.dataclass
class RingState:
    """Potentials ``u`` and recovery ``v`` (N_CELLS,), ECG window (WINDOW,) at unit gain."""

    u: jax.Array
    v: jax.Array
    ecg_window: jax.Array  # oldest sample first


@struct.dataclass
class MyocardialParams:
    """Patient-level signal and perfusion parameters (units in ``PARAMETER_RANGES``)."""

    ecg_gain_mv: jax.Array = 1.0  # electrode / thorax gain of the pseudo-ECG
    ischaemia_time_constant_s: jax.Array = 360.0  # e-folding of m without flow
    recovery_time_constant_s: jax.Array = 120.0  # recovery of m at full perfusion
    perfusion_time_constant_s: jax.Array = 30.0  # build-up / wash-out of perfusion
    cpr_quality: jax.Array = 0.3  # coronary flow CPR sustains, fraction of normal (20-40 %)


def validate(params: MyocardialParams, prefix: str = "") -> None:
    """Raise ``ValueError`` naming any parameter outside ``PARAMETER_RANGES``."""
    validate_parameters(params, PARAMETER_RANGES, prefix=prefix)


def validate_ring(params: RingParams, prefix: str = "") -> None:
    """Raise ``ValueError`` naming any ring parameter outside ``RING_PARAMETER_RANGES``."""
    validate_parameters(params, RING_PARAMETER_RANGES, prefix=prefix)


def _ring_constants() -> tuple[np.ndarray, np.ndarray]:
    """Viability thresholds (N,) and lead weights (N,).

    Thresholds grow from the ring's middle (best perfused) to cell 0. The lead
    weights turn the gradient dipole into a dot product with u (summation by
    parts): sum_i w_i (u_{i+1} - u_i) = sum_i (w_{i-1} - w_i) u_i.
    """
    cells = np.arange(N_CELLS)
    thresholds = 0.1 + 0.8 * np.abs(cells + 0.5 - N_CELLS / 2) / (N_CELLS / 2)
    w = np.cos(2.0 * np.pi * (cells + 0.5) / N_CELLS)
    return thresholds.astype(np.float32), (np.roll(w, 1) - w).astype(np.float32)


VIABILITY_THRESHOLDS, LEAD_WEIGHTS = _ring_constants()


def _dft_rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cos and sin DFT rows of the AMSA band (bins, WINDOW) and the bin frequencies (Hz)."""
    freqs = np.fft.rfftfreq(WINDOW, 1.0 / SAMPLE_RATE_HZ)
    bins = np.nonzero((freqs >= AMSA_BAND_HZ[0]) & (freqs <= AMSA_BAND_HZ[1]))[0]
    phase = 2.0 * np.pi * np.outer(bins, np.arange(WINDOW)) / WINDOW
    return (
        np.cos(phase).astype(np.float32),
        np.sin(phase).astype(np.float32),
        freqs[bins].astype(np.float32),
    )


DFT_COS, DFT_SIN, BAND_FREQUENCIES_HZ = _dft_rows()


def viability(myocardial_energy: jax.Array) -> jax.Array:
    """Excitable weight of every cell (N,) at myocardial energy ``m``."""
    return jax.nn.sigmoid((myocardial_energy - VIABILITY_THRESHOLDS) / VIABILITY_WIDTH)


def ectopic_currents(uniforms: jax.Array, viable: jax.Array, params: RingParams) -> jax.Array:
    """Focal stimulus per sample and cell (len(uniforms), N) from one uniform per sample.

    A focus fires when its uniform is below the per-sample firing probability;
    the same uniform, rescaled, picks the site. Only viable cells (s > 1/2) fire.
    """
    fire_probability = jnp.clip(params.ectopic_rate_hz / SAMPLE_RATE_HZ, 1e-6, 1.0)
    fires = uniforms < fire_probability
    site = jnp.floor(uniforms / fire_probability * N_CELLS)
    cells = jnp.arange(N_CELLS, dtype=jnp.float32)
    offset = jnp.mod(cells[None, :] - site[:, None] + N_CELLS // 2, N_CELLS) - N_CELLS // 2
    in_focus = (jnp.abs(offset) <= FOCUS_HALF_WIDTH) & fires[:, None] & (viable[None, :] > 0.5)
    return jnp.where(in_focus, FOCUS_CURRENT, 0.0)


def advance(
    state: RingState, params: RingParams, myocardial_energy: jax.Array, uniforms: jax.Array
) -> RingState:
    """Simulate SAMPLES_PER_STEP ECG samples; ``uniforms`` (SAMPLES_PER_STEP,) drive the foci."""
    viable = viability(myocardial_energy)
    cell = ap.AlievPanfilovParams(
        k=params.k
        * (params.ischaemic_excitability + (1.0 - params.ischaemic_excitability) * viable),
        a=params.a + (params.ischaemic_threshold - params.a) * (1.0 - viable),
        epsilon_0=params.epsilon_0,
        mu_1=params.mu_1,
        mu_2=params.mu_2,
    )
    lead = jnp.asarray(LEAD_WEIGHTS)
    t = jnp.zeros((), jnp.float32)

    def sample(
        y: ap.AlievPanfilovState, current: jax.Array
    ) -> tuple[ap.AlievPanfilovState, jax.Array]:
        for _ in range(SUBSTEPS_PER_SAMPLE):
            rate = ap.vector_field(t, y, (cell, current))
            laplacian = jnp.roll(y.u, 1) + jnp.roll(y.u, -1) - 2.0 * y.u
            y = ap.clamp(
                ap.AlievPanfilovState(
                    u=y.u + DT * (rate.u + params.diffusion * laplacian), v=y.v + DT * rate.v
                )
            )
        return y, jnp.dot(lead, y.u)

    currents = ectopic_currents(uniforms, viable, params)
    y, snippet = jax.lax.scan(sample, ap.AlievPanfilovState(u=state.u, v=state.v), currents)
    window = jnp.concatenate([state.ecg_window[SAMPLES_PER_STEP:], snippet])
    return RingState(u=y.u, v=y.v, ecg_window=window)


def initial_ring() -> RingState:
    """A wave launched into one direction (refractory tail behind it): re-entry starts."""
    cells = np.arange(N_CELLS)
    return RingState(
        u=jnp.asarray(np.where(cells < 3, 1.0, 0.0), jnp.float32),
        v=jnp.asarray(np.where(cells >= N_CELLS - 6, 1.5, 0.0), jnp.float32),
        ecg_window=jnp.zeros((WINDOW,), jnp.float32),
    )


def spectral_features(ecg_window_mv: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(amsa_mv_hz, peak_to_peak_mv)`` of ECG window(s) (last axis = WINDOW samples, mV)."""
    detrended = ecg_window_mv - jnp.mean(ecg_window_mv, axis=-1, keepdims=True)
    re = detrended @ jnp.asarray(DFT_COS).T
    im = detrended @ jnp.asarray(DFT_SIN).T
    amplitude = 2.0 / WINDOW * jnp.sqrt(re * re + im * im)
    amsa = amplitude @ jnp.asarray(BAND_FREQUENCIES_HZ)
    peak_to_peak = jnp.max(ecg_window_mv, axis=-1) - jnp.min(ecg_window_mv, axis=-1)
    return amsa, peak_to_peak


def simulate_features(
    params: RingParams, myocardial_energy: jax.Array, key: jax.Array, n_steps: int
) -> tuple[jax.Array, jax.Array]:
    """AMSA and peak-to-peak amplitude (unit gain) after each of ``n_steps`` ring steps."""

    def body(state: RingState, step_key: jax.Array) -> tuple[RingState, tuple]:
        uniforms = prng.uniform(step_key, (SAMPLES_PER_STEP,))
        state = advance(state, params, myocardial_energy, uniforms)
        return state, spectral_features(state.ecg_window)

    _, features = jax.lax.scan(body, initial_ring(), prng.split(key, n_steps))
    return features


@functools.cache
def feature_library() -> tuple[np.ndarray, np.ndarray]:
    """AMSA (mV x Hz) and peak-to-peak (mV) at unit gain, shape (LIBRARY_LEVELS, LIBRARY_WINDOWS).

    Row ``l`` is the ring at energy ``l / (LIBRARY_LEVELS - 1)`` with default
    ``RingParams``, after LIBRARY_WARMUP steps of warm-up. Computed once per
    process (about a second), deterministic for a given JAX backend.
    """
    with jax.ensure_compile_time_eval():
        levels = jnp.linspace(0.0, 1.0, LIBRARY_LEVELS, dtype=jnp.float32)
        keys = prng.split(jax.random.PRNGKey(20240601), LIBRARY_LEVELS)
        run = jax.jit(
            jax.vmap(
                lambda m, key: simulate_features(
                    RingParams(), m, key, LIBRARY_WARMUP + LIBRARY_WINDOWS
                )
            )
        )
        amsa, peak_to_peak = run(levels, keys)
        return (
            np.asarray(amsa[:, LIBRARY_WARMUP:], np.float32),
            np.asarray(peak_to_peak[:, LIBRARY_WARMUP:], np.float32),
        )


def library_bounds() -> tuple[float, float]:
    """Largest AMSA (mV x Hz) and peak-to-peak (mV) in the library at unit gain."""
    amsa, peak_to_peak = feature_library()
    return float(amsa.max()), float(peak_to_peak.max())


def read_features(
    myocardial_energy: jax.Array, window_index: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Library AMSA and peak-to-peak at energy ``m`` (linear between levels), unit gain."""
    amsa_table, ptp_table = (jnp.asarray(t) for t in feature_library())
    position = jnp.clip(myocardial_energy, 0.0, 1.0) * (LIBRARY_LEVELS - 1)
    lower = jnp.clip(jnp.floor(position), 0, LIBRARY_LEVELS - 2).astype(jnp.int32)
    weight = position - lower.astype(jnp.float32)
    column = jnp.mod(window_index, LIBRARY_WINDOWS)

    def interpolate(table: jax.Array) -> jax.Array:
        return (1.0 - weight) * table[lower, column] + weight * table[lower + 1, column]

    return interpolate(amsa_table), interpolate(ptp_table)


def perfusion_step(
    perfusion: jax.Array,
    myocardial_energy: jax.Array,
    params: MyocardialParams,
    duration_s: jax.Array,
    cpr: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Advance coronary perfusion ``c`` and energy ``m`` by ``duration_s`` s, with or without CPR.

    ``c`` relaxes exactly; ``m`` is advanced exactly for the interval's mean
    ``c`` (c moves in tens of seconds, m in minutes).
    """
    target = jnp.where(cpr, params.cpr_quality, 0.0)
    duration_s = jnp.maximum(duration_s, 0.0)
    decay = jnp.exp(-duration_s / params.perfusion_time_constant_s)
    new_perfusion = target + (perfusion - target) * decay
    # Mean of c over the interval (integral of the exponential); c itself at zero duration.
    fraction = jnp.where(
        duration_s > 1e-3,
        params.perfusion_time_constant_s / jnp.maximum(duration_s, 1e-3) * (1.0 - decay),
        1.0,
    )
    mean_c = target + (perfusion - target) * fraction
    gain = mean_c / params.recovery_time_constant_s
    loss = (1.0 - mean_c) / params.ischaemia_time_constant_s
    rate = gain + loss
    equilibrium = gain / rate
    new_energy = equilibrium + (myocardial_energy - equilibrium) * jnp.exp(-rate * duration_s)
    return new_perfusion, jnp.clip(new_energy, 0.0, 1.0)


def no_flow_energy(minutes: jax.Array, params: MyocardialParams) -> jax.Array:
    """Myocardial energy after ``minutes`` of untreated VF, starting from 1."""
    return jnp.exp(-60.0 * minutes / params.ischaemia_time_constant_s)
