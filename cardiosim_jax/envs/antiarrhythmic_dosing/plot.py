"""AntiarrhythmicDosing-v0 trajectory panels: dose, concentration, effect, membrane potential."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from cardiosim_jax.envs.antiarrhythmic_dosing import v0 as dosing_env
from cardiosim_jax.models import pharmacokinetics
from cardiosim_jax.plotting import Episodes, bands, legend, reference_lines

#: Hours per AntiarrhythmicDosing step (one PK Euler step).
DOSING_STEP_H = pharmacokinetics.DT_HOURS


def _runs(active: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last + 1)`` index pairs of the runs of True in ``active``."""
    padded = np.concatenate([[0], active.astype(int), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def plot_v0(axes: Sequence[Axes], episodes: Episodes) -> str:
    ax_v, ax_c, ax_dose, ax_effect = axes
    dt = DOSING_STEP_H
    pk = [episodes.patient_params(j).pk for j in range(episodes.n)]
    bands(
        ax_c,
        episodes,
        [(float(p.therapeutic_min), float(p.therapeutic_max)) for p in pk],
        gid="therapeutic_window",
        label="therapeutic window",
        color="tab:green",
    )
    for gid, label, color, linestyle in (
        ("therapeutic_min", "therapeutic min", "tab:green", ":"),
        ("therapeutic_max", "therapeutic max", "tab:green", "--"),
        ("toxic_threshold", "toxic threshold", "tab:red", "--"),
    ):
        values = [float(getattr(p, gid)) for p in pk]
        reference_lines(
            ax_c, episodes, values, gid=gid, label=label, color=color, linestyle=linestyle
        )
    arrhythmic = False
    for j in range(episodes.n):
        style = episodes.style(j)
        obs0 = episodes.traj.observation[j, 0]
        ax_v.plot(*episodes.after_steps(j, dt, obs0[0], lambda t: t.state.cell.v), **style)
        ax_c.plot(
            *episodes.after_steps(j, dt, obs0[2], lambda t: t.info["concentration"]),
            label=episodes.label("plasma concentration", j),
            **style,
        )
        times, dose = episodes.per_step(j, dt, lambda t: t.action[..., 0])
        dose = np.clip(dose, 0.0, dosing_env.MAX_DOSE_MG)  # as the env clips it
        ax_dose.plot(times, dose, drawstyle="steps-post", **style)
        ax_effect.plot(
            *episodes.after_steps(j, dt, obs0[4], lambda t: t.info["efficacy"]),
            label=episodes.label("efficacy", j),
            **style,
        )
        # Arrhythmic steps shaded; with several patients each gets a strip, patient 0 on top.
        active = episodes.series(lambda t: t.info["arrhythmia_active"], j) > 0.5
        for first, last in _runs(active):
            arrhythmic = True
            ax_effect.axvspan(
                first * dt,
                last * dt,
                ymin=1.0 - (j + 1) / episodes.n,
                ymax=1.0 - j / episodes.n,
                color=style["color"] if episodes.n > 1 else "tab:red",
                alpha=0.25,
                lw=0,
                gid="arrhythmia",
            )
    ax_effect.set_ylim(0.0, 1.0)
    ax_v.set_ylabel("membrane v\n(FHN, dimensionless)")
    ax_c.set_ylabel("plasma conc.\n(mg/L)")
    ax_dose.set_ylabel("dose\n(mg per step)")
    ax_effect.set_ylabel("efficacy (0–1)")
    legend(ax_c)
    strips = "arrhythmic" if episodes.n == 1 else "arrhythmic\n(a strip per patient,\n0 on top)"
    shading = Patch(color="tab:red" if episodes.n == 1 else "0.6", alpha=0.25, label=strips)
    legend(ax_effect, [shading] if arrhythmic else [])
    return "time (h)"
