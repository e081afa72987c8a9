"""Verified energy savings: a weather-normalised daily baseline, its fit, and avoided energy use.

Method (../shared/domain.md, "Energy savings"; IPMVP Option C, whole building, on the
building's main power meters):

* **Daily model, CalTRACK style.** ``kWh_day = mu + bH * max(Tbh - T, 0) + bC * max(T - Tbc, 0)``
  with ``T`` the day's mean outdoor temperature. Four forms are tried -- intercept only, HDD,
  CDD, HDD+CDD -- with every balance point on a 1 °C grid (``BALANCE_GRID_C``, with
  ``Tbh <= Tbc``); a degree-day term is only tried where at least ``MIN_DEGREE_DAYS`` baseline
  days have degrees on that side and they add up to ``MIN_DEGREE_SUM`` °C·days (CalTRACK's
  data-sufficiency idea). Each candidate is an ordinary least-squares fit; the one with the
  highest adjusted R² among those whose every coefficient is > 0 wins -- and, as CalTRACK
  requires, whose degree-day slopes are significant (p < ``MAX_SLOPE_P`` = 0.1), or noise on a
  weather-independent load would win with a tiny slope at some balance point. With
  ``split_weekday_weekend`` weekdays (Mon-Fri) and weekends get a model each (offices are
  nearly empty at weekends, which no temperature term explains).
* **Fit metrics** over the baseline days (n points, p parameters of all segments together):
  ``CV(RMSE) = sqrt(sum((y - yhat)^2) / (n - p)) / mean(y)``,
  ``NMBE = sum(y - yhat) / ((n - p) * mean(y))``, R² and adjusted R².
* **Data.** Daily kWh is the sum of the building's main meters (``ReportContext.mains``) from
  ``Store.counter_delta`` over local days. A day counts only when every main meter has a
  trusted sample in it and a positive use (for electricity 0 kWh is a missing reading, and a
  day inside a data gap only holds interpolated use), and when the day has a temperature.
  The baseline is normally the 365 days before the reporting period with at most 10% of its
  days missing; otherwise the report warns.
* **Savings** = predicted (adjusted baseline) - metered, summed over the reporting days that
  count, in kWh, as a fraction of the prediction, and in money (:func:`energy_price`).
* **Uncertainty** (ASHRAE Guideline 14-2014, Annex B, fractional savings uncertainty)::

      dE / E_save = 1.26 * t * CV * sqrt((n / n') * (1 + 2 / n') * (1 / m)) / F

  ``n`` baseline days, ``n' = n * (1 - rho) / (1 + rho)`` the effective number after the lag-1
  autocorrelation ``rho`` of the baseline residuals (``n' = n`` when ``rho <= 0``), ``m``
  reporting days, ``F`` savings / prediction, ``t`` the two-sided Student t at
  ``CONFIDENCE`` = 90% with ``n' - p`` degrees of freedom. The report gives the ± kWh at 90%
  and, for Guideline 14's own test (uncertainty below 50% of the savings at 68% confidence),
  the fraction at 68%. The 1.26 factor was fitted on monthly models; on daily data with
  autocorrelated residuals the formula is known to be approximate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from collector.profile import load_profile
from config.models import Device
from config.reporting import NonRoutineEvent, SavingsSettings
from reports.context import ReportContext
from reports.period import Period
from reports.tariffs import price_intervals, tariff_for, version_on
from reports.weather import daily_temperature, daily_windows, describe_source
from store.base import Windows

__all__ = [
    "BALANCE_GRID_C",
    "CONFIDENCE",
    "G14_DAILY_LIMITS",
    "BaselineFit",
    "BuildingSavings",
    "DailyModel",
    "FitStats",
    "Price",
    "SavingsConfigError",
    "SavingsNumbers",
    "SavingsReport",
    "building_daily_kwh",
    "compute_savings",
    "default_baseline",
    "energy_price",
    "fit_baseline",
    "fit_daily_model",
    "fit_metrics",
    "lag1_autocorrelation",
    "savings_report",
    "t_two_sided",
]

Form = Literal["intercept_only", "hdd", "cdd", "hdd_cdd"]
Segment = Literal["all", "weekday", "weekend"]
FloatArray = npt.NDArray[np.float64]

BALANCE_GRID_C: tuple[float, ...] = tuple(float(c) for c in range(0, 31))
MIN_DEGREE_DAYS = 10  # baseline days with degrees on a side before that term is tried
MIN_DEGREE_SUM = 20.0  # °C·days on that side
MIN_SEGMENT_DAYS = 10  # fewer usable days than this: no model for the segment
MAX_SLOPE_P = 0.1  # CalTRACK: a degree-day slope must be significant at this level
BASELINE_DAYS = 365
MAX_MISSING = 0.10
CONFIDENCE = 0.90
G14_CONFIDENCE = 0.68
G14_MAX_FSU = 0.50
_G14_FACTOR = 1.26
_KWH = 1  # decimals of kWh in the output
_FRAC = 5  # decimals of fractions (R², CV(RMSE), NMBE, shares)


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True, slots=True)
class Limits:
    cv_rmse: float
    nmbe: float
    name: str
    why: str


G14_DAILY_LIMITS = Limits(
    cv_rmse=0.15,
    nmbe=0.05,
    name="ASHRAE Guideline 14 monthly limits (CV(RMSE) <= 15%, |NMBE| <= 5%), applied to the "
    "daily model",
    why="Guideline 14 gives limits for monthly (15% / 5%) and hourly (30% / 10%) models only. "
    "A daily model is held to the stricter monthly limits: savings are reported by month, and "
    "day-to-day noise is the noise a monthly total averages out, so a daily model that meets "
    "the monthly limits is at least as good as a monthly one; the hourly limits allow for the "
    "hour-to-hour schedule noise that daily totals no longer contain.",
)
"""The calibration limits a daily baseline is judged by (see ``G14_DAILY_LIMITS.why``)."""


# --------------------------------------------------------------------------- fit metrics


@dataclass(frozen=True, slots=True)
class FitStats:
    n: int
    p: int
    r2: float
    adj_r2: float
    cv_rmse: float  # fraction of the mean (0.0833 = 8.33%)
    nmbe: float  # fraction of the mean, positive when the model under-predicts
    rmse: float
    mean: float


def fit_metrics(
    y: Sequence[float] | FloatArray, yhat: Sequence[float] | FloatArray, p: int
) -> FitStats:
    """Goodness of fit of ``yhat`` to ``y`` for a model of ``p`` parameters.

    ``CV(RMSE) = sqrt(sum((y - yhat)^2) / (n - p)) / mean(y)`` and
    ``NMBE = sum(y - yhat) / ((n - p) * mean(y))``; R² is ``1 - SSE / SST`` (0 when ``y`` is
    constant) and adjusted R² ``1 - (1 - R²) (n - 1) / (n - p)``.
    """
    ya = np.asarray(y, dtype=np.float64)
    yh = np.asarray(yhat, dtype=np.float64)
    n = len(ya)
    if n != len(yh):
        raise ValueError("y and yhat differ in length")
    if n <= p:
        raise ValueError(f"need more points than parameters (n={n}, p={p})")
    resid = ya - yh
    sse = float(resid @ resid)
    mean = float(ya.mean())
    sst = float(((ya - mean) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else 0.0
    adj = 1.0 - (1.0 - r2) * (n - 1) / (n - p)
    rmse = math.sqrt(sse / (n - p))
    cv = rmse / mean if mean else math.inf
    nmbe = float(resid.sum()) / ((n - p) * mean) if mean else math.inf
    return FitStats(n, p, r2, adj, cv, nmbe, rmse, mean)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class DailyModel:
    """One fitted candidate: ``mu + bh * max(tbh - T, 0) + bc * max(T - tbc, 0)``."""

    form: Form
    mu: float
    bh: float = 0.0
    tbh: float | None = None
    bc: float = 0.0
    tbc: float | None = None

    @property
    def p(self) -> int:
        return {"intercept_only": 1, "hdd": 2, "cdd": 2, "hdd_cdd": 3}[self.form]

    def predict(self, temps: FloatArray | None, n: int | None = None) -> FloatArray:
        """Predicted kWh per day; ``temps`` may be None for an intercept-only model."""
        if temps is None:
            if self.form != "intercept_only":
                raise ValueError("a temperature model needs temperatures")
            return np.full(n if n is not None else 0, self.mu)
        out = np.full(len(temps), self.mu)
        if self.tbh is not None:
            out += self.bh * np.maximum(self.tbh - temps, 0.0)
        if self.tbc is not None:
            out += self.bc * np.maximum(temps - self.tbc, 0.0)
        return out

    def formula(self) -> str:
        text = f"kWh/day = {self.mu:.1f}"
        if self.tbh is not None:
            text += f" + {self.bh:.2f} × max({self.tbh:g} °C − T, 0)"
        if self.tbc is not None:
            text += f" + {self.bc:.2f} × max(T − {self.tbc:g} °C, 0)"
        return text


def _lstsq(x: FloatArray, y: FloatArray) -> tuple[FloatArray, float]:
    solved, _, _, _ = np.linalg.lstsq(x, y, rcond=None)
    coef = np.asarray(solved, dtype=np.float64)
    resid = y - x @ coef
    return coef, float(resid @ resid)


def fit_daily_model(
    temps: FloatArray | None,
    kwh: FloatArray,
    grid: Sequence[float] = BALANCE_GRID_C,
) -> tuple[DailyModel, FitStats] | None:
    """The best candidate for these days: highest adjusted R² among those with every
    coefficient > 0 and significant degree-day slopes.

    Without temperatures only the intercept-only form is possible. None when no candidate
    qualifies (e.g. too few days, or no positive use).
    """
    y = np.asarray(kwh, dtype=np.float64)
    n = len(y)
    if n < MIN_SEGMENT_DAYS:
        return None
    sst = float(((y - y.mean()) ** 2).sum())
    ones = np.ones(n)

    def adj(sse: float, p: int) -> float:
        r2 = 1.0 - sse / sst if sst > 0 else 0.0
        return 1.0 - (1.0 - r2) * (n - 1) / (n - p)

    best: tuple[float, DailyModel] | None = None
    mu0 = float(y.mean())
    if mu0 > 0:
        best = (adj(float(((y - mu0) ** 2).sum()), 1), DailyModel("intercept_only", mu0))
    if temps is not None:
        t = np.asarray(temps, dtype=np.float64)
        hdd = {b: np.maximum(b - t, 0.0) for b in grid}
        cdd = {b: np.maximum(t - b, 0.0) for b in grid}
        ok_h = [b for b in grid if _enough(hdd[b])]
        ok_c = [b for b in grid if _enough(cdd[b])]
        cands: list[tuple[Form, float | None, float | None]] = [("hdd", b, None) for b in ok_h]
        cands += [("cdd", None, b) for b in ok_c]
        cands += [("hdd_cdd", bh, bc) for bh in ok_h for bc in ok_c if bh <= bc]
        for form, tbh, tbc in cands:
            cols = [ones]
            if tbh is not None:
                cols.append(hdd[tbh])
            if tbc is not None:
                cols.append(cdd[tbc])
            x = np.column_stack(cols)
            coef, sse = _lstsq(x, y)
            if not bool((coef > 0).all()):
                continue
            score = adj(sse, len(cols))
            if best is not None and score <= best[0]:
                continue
            if not _slopes_significant(x, coef, sse):
                continue
            mu = float(coef[0])
            bh = float(coef[1]) if tbh is not None else 0.0
            bc = float(coef[-1]) if tbc is not None else 0.0
            best = (score, DailyModel(form, mu, bh, tbh, bc, tbc))
    if best is None:
        return None
    model = best[1]
    return model, fit_metrics(y, model.predict(temps if temps is not None else None, n), model.p)


def _slopes_significant(x: FloatArray, coef: FloatArray, sse: float) -> bool:
    """Every coefficient after the intercept has a two-sided p-value below MAX_SLOPE_P."""
    n, p = x.shape
    df = n - p
    if df <= 0:
        return False
    try:
        cov = np.linalg.inv(x.T @ x) * (sse / df)
    except np.linalg.LinAlgError:
        return False
    for j in range(1, p):
        se = math.sqrt(max(float(cov[j, j]), 0.0))
        if se == 0.0:
            continue  # an exact fit: as significant as it gets
        t = float(coef[j]) / se
        if _betai(df / 2.0, 0.5, df / (df + t * t)) >= MAX_SLOPE_P:
            return False
    return True


def _enough(degrees: FloatArray) -> bool:
    return int((degrees > 0).sum()) >= MIN_DEGREE_DAYS and float(degrees.sum()) >= MIN_DEGREE_SUM


def segment_of(day: date, split: bool) -> Segment:
    if not split:
        return "all"
    return "weekend" if day.weekday() >= 5 else "weekday"


@dataclass(frozen=True)
class BaselineFit:
    """The baseline model: one :class:`DailyModel` per segment, and its fit over all days."""

    split: bool
    models: dict[Segment, DailyModel]
    segment_stats: dict[Segment, FitStats]
    stats: FitStats
    days: list[date]
    residuals: FloatArray
    temp_range: tuple[float, float] | None
    missing_segments: list[Segment] = field(default_factory=list)

    def predict(self, days: Sequence[date], temps: Sequence[float] | None) -> FloatArray:
        """Adjusted baseline kWh of each day, by the model of the day's segment."""
        return _predict(self.models, self.split, days, temps)


def _predict(
    models: dict[Segment, DailyModel],
    split: bool,
    days: Sequence[date],
    temps: Sequence[float] | None,
) -> FloatArray:
    out = np.empty(len(days))
    t_all = None if temps is None else np.asarray(temps, dtype=np.float64)
    segs = np.array([segment_of(d, split) for d in days])
    for seg, model in models.items():
        idx = np.flatnonzero(segs == seg)
        if len(idx):
            out[idx] = model.predict(None if t_all is None else t_all[idx], len(idx))
    return out


def fit_baseline(
    days: Sequence[date],
    kwh: Sequence[float],
    temps: Sequence[float] | None,
    *,
    split: bool = False,
    grid: Sequence[float] = BALANCE_GRID_C,
) -> BaselineFit | None:
    """Fit the baseline days (each with its metered kWh and, if known, mean temperature).

    With ``split`` weekdays and weekends are fitted separately; if either has too few days the
    report falls back to one model for all days. None when no model can be fitted.
    """
    if len(days) != len(kwh) or (temps is not None and len(temps) != len(days)):
        raise ValueError("days, kwh and temps differ in length")
    order = sorted(range(len(days)), key=lambda i: days[i])
    d_all = [days[i] for i in order]
    y_all = np.array([kwh[i] for i in order], dtype=np.float64)
    t_all = None if temps is None else np.array([temps[i] for i in order], dtype=np.float64)
    segments: list[Segment] = ["weekday", "weekend"] if split else ["all"]
    models: dict[Segment, DailyModel] = {}
    seg_stats: dict[Segment, FitStats] = {}
    for seg in segments:
        idx = [i for i, d in enumerate(d_all) if segment_of(d, split) == seg]
        fitted = fit_daily_model(None if t_all is None else t_all[idx], y_all[idx], grid)
        if fitted is None:
            if split:
                fallback = fit_baseline(days, kwh, temps, split=False, grid=grid)
                if fallback is None:
                    return None
                return BaselineFit(
                    False,
                    fallback.models,
                    fallback.segment_stats,
                    fallback.stats,
                    fallback.days,
                    fallback.residuals,
                    fallback.temp_range,
                    [seg],
                )
            return None
        models[seg], seg_stats[seg] = fitted
    yhat = _predict(models, split, d_all, None if t_all is None else t_all.tolist())
    p = sum(m.p for m in models.values())
    stats = fit_metrics(y_all, yhat, p)
    t_range = None if t_all is None else (float(t_all.min()), float(t_all.max()))
    return BaselineFit(split, models, seg_stats, stats, d_all, y_all - yhat, t_range)


# --------------------------------------------------------------------------- uncertainty


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return h


def _betai(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided(confidence: float, df: float) -> float:
    """Student t with ``P(|T| <= t) = confidence`` at ``df`` degrees of freedom (no SciPy)."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    if not df > 0:
        raise ValueError("degrees of freedom must be positive")

    def inside(t: float) -> float:
        return 1.0 - _betai(df / 2.0, 0.5, df / (df + t * t))

    lo, hi = 0.0, 1.0
    while inside(hi) < confidence:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if inside(mid) < confidence:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2.0


def lag1_autocorrelation(days: Sequence[date], residuals: Sequence[float] | FloatArray) -> float:
    """Lag-1 autocorrelation of residuals over pairs of consecutive calendar days.

    ``sum(e_t * e_(t-1)) / sum(e_t^2)``; pairs across a missing day are skipped, so a gap does
    not pair unrelated days.
    """
    e = np.asarray(residuals, dtype=np.float64)
    denom = float(e @ e)
    if len(e) < 3 or denom == 0:
        return 0.0
    num = 0.0
    for i in range(1, len(days)):
        if days[i] - days[i - 1] == timedelta(days=1):
            num += float(e[i] * e[i - 1])
    return num / denom


@dataclass(frozen=True, slots=True)
class SavingsNumbers:
    days: int  # reporting days that count (m)
    predicted: float
    metered: float
    savings: float
    fraction: float | None  # savings / predicted
    rho: float
    n_effective: float
    t: float
    uncertainty: float  # ± kWh at CONFIDENCE
    fsu: float | None  # uncertainty / |savings| at CONFIDENCE
    fsu_g14: float | None  # the same at 68%


def compute_savings(
    fit: BaselineFit,
    days: Sequence[date],
    kwh: Sequence[float],
    temps: Sequence[float] | None,
    confidence: float = CONFIDENCE,
) -> SavingsNumbers:
    """Avoided energy use over the reporting ``days`` and its Guideline 14 uncertainty."""
    if not days:
        raise ValueError("no reporting days")
    predicted = fit.predict(days, temps)
    metered = np.asarray(kwh, dtype=np.float64)
    e_pred = float(predicted.sum())
    e_meas = float(metered.sum())
    savings = e_pred - e_meas
    fraction = savings / e_pred if e_pred > 0 else None
    n = fit.stats.n
    p = fit.stats.p
    rho = lag1_autocorrelation(fit.days, fit.residuals)
    n_eff = n * (1.0 - rho) / (1.0 + rho) if rho > 0 else float(n)
    df = max(n_eff - p, 1.0)
    m = len(days)
    # dE = FSU * E_save = 1.26 t CV sqrt(...) * E_pred: finite even when the savings are ~0.
    spread = fit.stats.cv_rmse * math.sqrt((n / n_eff) * (1.0 + 2.0 / n_eff) / m) * e_pred
    t = t_two_sided(confidence, df)
    unc = _G14_FACTOR * t * spread
    unc68 = _G14_FACTOR * t_two_sided(G14_CONFIDENCE, df) * spread
    fsu = unc / abs(savings) if savings else None
    fsu68 = unc68 / abs(savings) if savings else None
    return SavingsNumbers(m, e_pred, e_meas, savings, fraction, rho, n_eff, t, unc, fsu, fsu68)


# --------------------------------------------------------------------------- data


def _rollover(device: Device, metric: str) -> float | None:
    src = device.source
    if src.type == "mqtt":
        return None
    try:
        return load_profile(src.profile).register(metric).rollover
    except (OSError, ValueError, KeyError):
        return None


def _rollover_groups(meters: Sequence[Device], metric: str) -> dict[float | None, list[str]]:
    """Meter ids by counter wrap value: one ``counter_delta`` query per group."""
    groups: dict[float | None, list[str]] = {}
    for m in meters:
        groups.setdefault(_rollover(m, metric), []).append(m.id)
    return groups


def building_daily_kwh(
    rc: ReportContext, meters: Sequence[Device], period: Period
) -> dict[date, float | None]:
    """kWh per local day of ``period`` summed over ``meters``; None where the day is missing.

    A day is missing unless every meter has a trusted sample in it and a positive use.
    """
    return _daily_sums(meters, period, _daily_found(rc, meters, period))


# (device, local day) -> kWh of the days with a trusted sample and a positive use
_DailyFound = dict[tuple[str, date], float]


def _daily_found(rc: ReportContext, meters: Sequence[Device], period: Period) -> _DailyFound:
    """Daily use per meter: one ``counter_delta`` per rollover value for all ``meters`` (each
    meter's windows do not depend on the others read with it)."""
    metric = rc.config.reports.energy.metric
    groups = _rollover_groups(meters, metric)
    found: _DailyFound = {}
    for windows in daily_windows(period):
        for rollover, ids in groups.items():
            for cw in rc.store.counter_delta(metric, windows, ids, rollover=rollover):
                if cw.samples > 0 and cw.delta > 0:
                    found[(cw.device, cw.start.astimezone(period.tz).date())] = cw.delta
    return found


def _daily_sums(
    meters: Sequence[Device], period: Period, found: _DailyFound
) -> dict[date, float | None]:
    out: dict[date, float | None] = {}
    for d in period.days:
        vals = [found.get((m.id, d)) for m in meters]
        out[d] = (
            None
            if not meters or any(v is None for v in vals)
            else sum(v for v in vals if v is not None)
        )
    return out


@dataclass(frozen=True, slots=True)
class Price:
    per_kwh: float | None
    basis: str


def energy_price(
    rc: ReportContext, building: str, meters: Sequence[Device], period: Period, until: datetime
) -> Price:
    """The price per kWh that turns the building's saved kWh into money.

    The average price of the building's metered energy over the reporting period (up to
    ``until``): hourly use of its main meters priced by its time-of-use tariff (the version of
    each day, ``reports.tariffs``), cost / kWh. Savings are valued as if the avoided energy had
    the same daily shape as the energy used -- a daily model cannot tell more. Without metered
    energy it falls back to the flat price of the version in force on the first day; without a
    tariff the savings are not valued. Every choice of price lives here.
    """
    return _energy_price(
        rc, building, meters, period, until, _hourly_use(rc, meters, period, until)
    )


# device -> (start, end, kWh) of its hours with a positive use, in time order
_HourlyUse = dict[str, list[tuple[datetime, datetime, float]]]


def _hourly_use(
    rc: ReportContext, meters: Sequence[Device], period: Period, until: datetime
) -> _HourlyUse:
    """Hourly use per meter over the reporting period up to ``until``: one ``counter_delta`` per
    rollover value for all ``meters``."""
    out: _HourlyUse = {}
    end = min(period.end, until)
    if end <= period.start:
        return out
    # In UTC: an hour added to a local time across a DST change would be a wall-clock hour.
    hours = Windows(period.start.astimezone(UTC), end.astimezone(UTC), timedelta(hours=1))
    metric = rc.config.reports.energy.metric
    for rollover, ids in _rollover_groups(meters, metric).items():
        for cw in rc.store.counter_delta(metric, hours, ids, rollover=rollover):
            if cw.delta > 0:
                out.setdefault(cw.device, []).append((cw.start, cw.end, cw.delta))
    return out


def _energy_price(
    rc: ReportContext,
    building: str,
    meters: Sequence[Device],
    period: Period,
    until: datetime,
    use: _HourlyUse,
) -> Price:
    tariff = tariff_for(rc.config.tariffs, building)
    if tariff is None:
        return Price(None, "no tariff prices this building: savings are not valued")
    end = min(period.end, until)
    if end > period.start:
        metric = rc.config.reports.energy.metric
        # The order counter_delta gives them per rollover group (devices sorted): the same sums.
        intervals = [
            iv
            for _, ids in _rollover_groups(meters, metric).items()
            for device in sorted(set(ids))
            for iv in use.get(device, [])
        ]
        totals = price_intervals(tariff, intervals, period.tz)
        priced = totals.total_kwh - totals.unpriced_kwh
        if priced > 0:
            return Price(
                totals.total_cost / priced,
                f"average price of the building's metered energy in the period under tariff "
                f"{tariff.id} ({tariff.name}), time-of-use bands of each day",
            )
    version = version_on(tariff, period.first)
    if version is None:
        return Price(None, f"tariff {tariff.id} has no version in force on {period.first}")
    return Price(
        version.prices["flat"],
        f"flat price of tariff {tariff.id} ({tariff.name}), version of "
        f"{version.effective_from} (no metered energy to average)",
    )


class SavingsConfigError(ValueError):
    """``reports.savings`` cannot describe a baseline (e.g. it ends before it starts)."""


def default_baseline(settings: SavingsSettings, reporting: Period) -> Period:
    """``baseline_start`` .. ``baseline_end`` (exclusive) from the settings; what is not set
    defaults to the 365 days before the measure (``reporting_start``) or, without one, before
    the reporting period."""
    end = settings.baseline_end or settings.reporting_start or reporting.first
    start = settings.baseline_start or end - timedelta(days=BASELINE_DAYS)
    if end <= start:
        raise SavingsConfigError(
            f"reports.savings: the baseline would end ({end}, exclusive) before it starts ({start})"
        )
    return Period.days_between(start, end, reporting.tz)


def _overlaps(e: NonRoutineEvent, p: Period) -> bool:
    return e.start <= p.last and (e.end is None or e.end >= p.first)


# --------------------------------------------------------------------------- output


class PeriodOut(BaseModel):
    first: date = Field(description="First local day")
    last: date = Field(description="Last local day (inclusive)")
    days: int = Field(description="Number of days")


class FitOut(BaseModel):
    n: int = Field(description="Baseline days fitted")
    p: int = Field(description="Model parameters (all segments together)")
    r2: float = Field(description="R², 0..1")
    adj_r2: float = Field(description="Adjusted R²")
    cv_rmse: float = Field(description="CV(RMSE) as a fraction of the mean (0.0833 = 8.33%)")
    nmbe: float = Field(description="NMBE as a fraction of the mean")
    rmse_kwh: float = Field(description="Root mean squared error with n - p dof, kWh per day")
    mean_kwh: float = Field(description="Mean metered kWh per baseline day")


class SegmentModelOut(BaseModel):
    segment: Segment = Field(description="all | weekday (Mon-Fri) | weekend (Sat-Sun)")
    form: Form = Field(description="intercept_only | hdd | cdd | hdd_cdd")
    formula: str = Field(description="The fitted model, T the daily mean outdoor temperature")
    intercept_kwh: float = Field(description="mu: kWh per day independent of the weather")
    heating_balance_c: float | None = Field(description="Tbh, °C; null without a heating term")
    heating_kwh_per_c: float | None = Field(description="bH, kWh per heating °C·day")
    cooling_balance_c: float | None = Field(description="Tbc, °C; null without a cooling term")
    cooling_kwh_per_c: float | None = Field(description="bC, kWh per cooling °C·day")
    fit: FitOut = Field(description="Fit of this segment alone")


class LimitsOut(BaseModel):
    name: str = Field(description="The limits applied")
    cv_rmse_max: float = Field(description="Highest CV(RMSE) that passes, fraction")
    nmbe_abs_max: float = Field(description="Highest |NMBE| that passes, fraction")
    why: str = Field(description="Why these limits apply to a daily model")


class UncertaintyOut(BaseModel):
    confidence: float = Field(description="Confidence level of kwh and fraction (0.9 = 90%)")
    kwh: float = Field(description="± kWh of the savings at that confidence")
    fraction_of_savings: float | None = Field(
        description="kwh / |savings| (fractional savings uncertainty); null when savings are 0"
    )
    fraction_of_savings_68: float | None = Field(
        description="The same at 68% confidence, the level of Guideline 14's test"
    )
    meets_g14: bool | None = Field(
        description="Guideline 14: uncertainty below 50% of the savings at 68% confidence "
        "(the guideline states it for annual savings)"
    )
    t: float = Field(description="Two-sided Student t at the confidence, n' - p dof")
    n: int = Field(description="Baseline days")
    n_effective: float = Field(description="n' = n (1 - rho) / (1 + rho)")
    autocorrelation: float = Field(description="rho: lag-1 autocorrelation of residuals")
    m: int = Field(description="Reporting days")
    formula: str = Field(description="How it was computed")


class EventOut(BaseModel):
    start: date = Field(description="First local day affected")
    end: date | None = Field(description="Last local day affected; null when open")
    building: str | None = Field(description="Building, null for the whole site")
    description: str = Field(description="What happened")
    in_baseline: bool = Field(description="Overlaps the baseline period")
    in_reporting: bool = Field(description="Overlaps the reporting period")


class DayOut(BaseModel):
    day: date = Field(description="Local day of the reporting period")
    segment: Segment = Field(description="Which model predicts it")
    temperature_c: float | None = Field(description="Daily mean outdoor temperature")
    metered_kwh: float | None = Field(description="Metered kWh; null when missing")
    predicted_kwh: float | None = Field(description="Adjusted baseline kWh; null without a model")
    counted: bool = Field(description="Whether the day is in the savings (metered and predicted)")


class BuildingSavings(BaseModel):
    building: str = Field(description="Building id")
    name: str = Field(description="Building name")
    meters: list[str] = Field(description="Main power meters summed (no parent)")
    status: Literal["ok", "insufficient_data"] = Field(
        description="insufficient_data: no model could be fitted or no reporting day counts"
    )
    baseline_days_used: int = Field(description="Baseline days with kWh and temperature")
    baseline_missing_days: int = Field(description="Baseline days without usable data")
    baseline_missing_fraction: float = Field(description="Missing share of baseline days")
    reporting_days_used: int = Field(description="Reporting days in the savings")
    reporting_missing_days: int = Field(description="Elapsed reporting days without data")
    reporting_days_pending: int = Field(description="Reporting days not over yet")
    missing_days: list[date] = Field(description="Missing days, baseline and reporting")
    model: list[SegmentModelOut] = Field(description="Fitted model per segment")
    fit: FitOut | None = Field(description="Fit over all baseline days")
    limits: LimitsOut = Field(description="Calibration limits applied")
    verdict: Literal["pass", "warn"] = Field(
        description="pass: the baseline meets the limits; warn otherwise or without a model"
    )
    predicted_kwh: float | None = Field(description="Adjusted baseline over the counted days")
    metered_kwh: float | None = Field(description="Metered use over the counted days")
    savings_kwh: float | None = Field(description="predicted - metered (avoided energy use)")
    savings_fraction: float | None = Field(description="savings / predicted")
    price_per_kwh: float | None = Field(description="Price valuing the saved kWh")
    price_basis: str = Field(description="Where the price comes from")
    savings_money: float | None = Field(description="savings_kwh x price_per_kwh")
    uncertainty: UncertaintyOut | None = Field(description="Savings uncertainty")
    events: list[EventOut] = Field(description="Non-routine events overlapping either period")
    warnings: list[str] = Field(description="Everything a reader should know before trusting it")
    daily: list[DayOut] = Field(description="Predicted vs metered per reporting day")


class TotalOut(BaseModel):
    buildings: int = Field(description="Buildings with savings in the total")
    predicted_kwh: float | None
    metered_kwh: float | None
    savings_kwh: float | None = Field(description="Sum over the buildings")
    savings_fraction: float | None
    savings_money: float | None = Field(description="Sum over buildings with a price")
    uncertainty_kwh: float | None = Field(
        description="± kWh at the report's confidence, buildings combined in quadrature"
    )


class SavingsReport(BaseModel):
    timezone: str = Field(description="Site time zone of all days")
    currency: str = Field(description="Currency of the money figures")
    reporting: PeriodOut = Field(description="Reporting period")
    baseline: PeriodOut = Field(description="Baseline period")
    measure_start: date | None = Field(description="First day after the measure (config)")
    temperature_source: str | None = Field(description="Where the daily temperature comes from")
    split_weekday_weekend: bool = Field(description="Weekdays and weekends modelled apart")
    confidence: float = Field(description="Confidence level of the uncertainties")
    method: str = Field(description="The method in one paragraph")
    buildings: list[BuildingSavings] = Field(description="Savings per building")
    total: TotalOut = Field(description="All buildings together")
    events: list[EventOut] = Field(description="Non-routine events overlapping either period")
    warnings: list[str] = Field(description="Report-wide warnings")


METHOD = (
    "IPMVP Option C on the main power meters. A CalTRACK-style daily model "
    "kWh = mu + bH·max(Tbh − T, 0) + bC·max(T − Tbc, 0) (T = daily mean outdoor temperature; "
    "intercept-only, HDD, CDD or HDD+CDD, balance points on a 1 °C grid, highest adjusted R² "
    "with all coefficients > 0 and slopes significant at p < 0.1) is fitted on the baseline "
    "and predicts each reporting day; "
    "savings = predicted − metered. Uncertainty: ASHRAE Guideline 14 fractional savings "
    "uncertainty with the lag-1 autocorrelation of the residuals, at 90% confidence."
)


def _r(v: float, digits: int) -> float:
    return round(v, digits)


def _fit_out(s: FitStats) -> FitOut:
    return FitOut(
        n=s.n,
        p=s.p,
        r2=_r(s.r2, _FRAC),
        adj_r2=_r(s.adj_r2, _FRAC),
        cv_rmse=_r(s.cv_rmse, _FRAC),
        nmbe=_r(s.nmbe, _FRAC),
        rmse_kwh=_r(s.rmse, _KWH + 1),
        mean_kwh=_r(s.mean, _KWH + 1),
    )


def _model_out(seg: Segment, m: DailyModel, s: FitStats) -> SegmentModelOut:
    return SegmentModelOut(
        segment=seg,
        form=m.form,
        formula=m.formula(),
        intercept_kwh=_r(m.mu, 2),
        heating_balance_c=m.tbh,
        heating_kwh_per_c=_r(m.bh, 3) if m.tbh is not None else None,
        cooling_balance_c=m.tbc,
        cooling_kwh_per_c=_r(m.bc, 3) if m.tbc is not None else None,
        fit=_fit_out(s),
    )


def _event_out(e: NonRoutineEvent, baseline: Period, reporting: Period) -> EventOut:
    return EventOut(
        start=e.start,
        end=e.end,
        building=e.building,
        description=e.description,
        in_baseline=_overlaps(e, baseline),
        in_reporting=_overlaps(e, reporting),
    )


def _period_out(p: Period) -> PeriodOut:
    return PeriodOut(first=p.first, last=p.last, days=len(p.days))


# --------------------------------------------------------------------------- the report


@dataclass
class _Inputs:
    rc: ReportContext
    settings: SavingsSettings
    baseline: Period
    reporting: Period
    elapsed: list[date]  # reporting days that are over
    temps: dict[date, float] | None
    now: datetime
    base_found: _DailyFound
    rep_found: _DailyFound
    hourly: _HourlyUse


def savings_report(
    rc: ReportContext,
    reporting: Period,
    *,
    baseline: Period | None = None,
    building: str | None = None,
) -> SavingsReport:
    """Savings of ``reporting`` against a baseline fitted on ``baseline``, per building.

    ``baseline`` defaults to :func:`default_baseline`. Buildings are those with main power
    meters (or only ``building``; an unknown id raises ValueError). Reporting days that are not
    over at ``rc.clock()`` are left out and counted as pending. A bad temperature CSV raises
    :class:`reports.weather.WeatherError`.
    """
    settings = rc.config.reports.savings
    base = baseline if baseline is not None else default_baseline(settings, reporting)
    if building is not None and building not in rc.buildings:
        raise ValueError(f"unknown building {building!r}")
    ids = [building] if building is not None else [b.id for b in rc.config.buildings]
    ids = [b for b in ids if rc.mains("power_meter", b)] if building is None else ids
    now = rc.clock()
    elapsed = [d for d, _, end in reporting.day_bounds() if end <= now]
    temps: dict[date, float] | None = None
    if settings.temperature is not None:
        span = Period(min(base.first, reporting.first), max(base.last, reporting.last), rc.tz)
        temps = daily_temperature(rc, span, settings.temperature)
    # One read per span for every building's mains, not one per building.
    mains = [m for b in ids for m in rc.mains("power_meter", b)]
    rep_period = Period(elapsed[0], elapsed[-1], reporting.tz) if elapsed else None
    inputs = _Inputs(
        rc,
        settings,
        base,
        reporting,
        elapsed,
        temps,
        now,
        base_found=_daily_found(rc, mains, base),
        rep_found=_daily_found(rc, mains, rep_period) if rep_period is not None else {},
        hourly=_hourly_use(rc, mains, reporting, now),
    )

    warnings: list[str] = []
    if settings.temperature is None:
        warnings.append(
            "no outdoor temperature source (reports.savings.temperature): the baseline is not "
            "weather-normalised (intercept-only model)"
        )
    if base.last >= reporting.first and base.first <= reporting.last:
        warnings.append(
            f"the baseline ({base.first}..{base.last}) overlaps the reporting period "
            f"({reporting.first}..{reporting.last})"
        )
    if settings.reporting_start is not None and reporting.first < settings.reporting_start:
        warnings.append(
            f"the reporting period starts before the measure (reporting_start "
            f"{settings.reporting_start}): days before it are not savings"
        )
    if not ids:
        warnings.append("no building has a main power meter")

    rows = [_building(inputs, b) for b in ids]
    counted = [r for r in rows if r.savings_kwh is not None]
    priced = [r.savings_money for r in counted if r.savings_money is not None]
    pred = sum(r.predicted_kwh or 0.0 for r in counted)
    unc = [r.uncertainty.kwh for r in counted if r.uncertainty is not None]
    total = TotalOut(
        buildings=len(counted),
        predicted_kwh=_r(pred, _KWH) if counted else None,
        metered_kwh=_r(sum(r.metered_kwh or 0.0 for r in counted), _KWH) if counted else None,
        savings_kwh=_r(sum(r.savings_kwh or 0.0 for r in counted), _KWH) if counted else None,
        savings_fraction=(
            _r(sum(r.savings_kwh or 0.0 for r in counted) / pred, _FRAC)
            if counted and pred > 0
            else None
        ),
        savings_money=_r(sum(priced), 2) if priced else None,
        uncertainty_kwh=_r(math.sqrt(sum(u * u for u in unc)), _KWH) if unc else None,
    )
    events = [
        _event_out(e, base, reporting)
        for e in settings.events
        if _overlaps(e, base) or _overlaps(e, reporting)
    ]
    return SavingsReport(
        timezone=rc.config.site.timezone,
        currency=rc.config.site.currency,
        reporting=_period_out(reporting),
        baseline=_period_out(base),
        measure_start=settings.reporting_start,
        temperature_source=(
            describe_source(settings.temperature) if settings.temperature is not None else None
        ),
        split_weekday_weekend=settings.split_weekday_weekend,
        confidence=CONFIDENCE,
        method=METHOD,
        buildings=rows,
        total=total,
        events=events,
        warnings=warnings,
    )


def _building(inp: _Inputs, b: str) -> BuildingSavings:
    rc, settings, base = inp.rc, inp.settings, inp.baseline
    meters = rc.mains("power_meter", b)
    temps = inp.temps
    warnings: list[str] = []
    base_kwh = _daily_sums(meters, base, inp.base_found)
    elapsed = inp.elapsed
    rep_kwh = (
        _daily_sums(meters, Period(elapsed[0], elapsed[-1], inp.reporting.tz), inp.rep_found)
        if elapsed
        else {}
    )

    def usable(d: date, kwh: dict[date, float | None]) -> bool:
        return kwh.get(d) is not None and (temps is None or d in temps)

    # A baseline day still running (a baseline given up to today) has only part of its use.
    b_over = {d for d, _, end in base.day_bounds() if end <= inp.now}
    b_days = [d for d in base.days if d in b_over and usable(d, base_kwh)]
    b_missing = [d for d in base.days if d not in b_over or not usable(d, base_kwh)]
    r_days = [d for d in elapsed if usable(d, rep_kwh)]
    r_missing = [d for d in elapsed if not usable(d, rep_kwh)]
    pending = len(inp.reporting.days) - len(elapsed)
    missing_frac = len(b_missing) / len(base.days)
    if len(base.days) < BASELINE_DAYS:
        warnings.append(
            f"the baseline has {len(base.days)} days; a full year ({BASELINE_DAYS} days) covers "
            "every season"
        )
    if missing_frac > MAX_MISSING:
        warnings.append(
            f"{len(b_missing)} of {len(base.days)} baseline days ({missing_frac:.0%}) have no "
            f"usable data (at most {MAX_MISSING:.0%} expected)"
        )
    if r_missing:
        warnings.append(
            f"{len(r_missing)} elapsed reporting days have no usable data and are left out of "
            "the savings"
        )
    if pending:
        warnings.append(f"{pending} reporting days are not over yet and are not counted")

    def t_of(days: list[date]) -> list[float] | None:
        return None if temps is None else [temps[d] for d in days]

    fit = (
        fit_baseline(
            b_days,
            [base_kwh[d] or 0.0 for d in b_days],
            t_of(b_days),
            split=settings.split_weekday_weekend,
        )
        if b_days
        else None
    )
    if fit is not None and fit.missing_segments:
        warnings.append(
            "too few baseline days to model weekdays and weekends apart "
            f"({', '.join(fit.missing_segments)}): one model for all days"
        )
    lim = G14_DAILY_LIMITS
    limits = LimitsOut(name=lim.name, cv_rmse_max=lim.cv_rmse, nmbe_abs_max=lim.nmbe, why=lim.why)
    events = [
        _event_out(e, base, inp.reporting)
        for e in settings.events
        if (e.building is None or e.building == b)
        and (_overlaps(e, base) or _overlaps(e, inp.reporting))
    ]
    if events:
        warnings.append(
            f"{len(events)} non-routine event(s) overlap the periods; their effect is not "
            "adjusted for (IPMVP non-routine adjustment)"
        )
    verdict: Literal["pass", "warn"] = "warn"
    numbers: SavingsNumbers | None = None
    if fit is None:
        warnings.append("no baseline model: too few baseline days with data")
    else:
        s = fit.stats
        if s.cv_rmse <= lim.cv_rmse and abs(s.nmbe) <= lim.nmbe:
            verdict = "pass"
        else:
            warnings.append(
                f"the baseline model misses the limits: CV(RMSE) {s.cv_rmse:.1%} "
                f"(max {lim.cv_rmse:.0%}), NMBE {s.nmbe:.2%} (max ±{lim.nmbe:.0%})"
            )
        if r_days:
            numbers = compute_savings(
                fit, r_days, [rep_kwh[d] or 0.0 for d in r_days], t_of(r_days)
            )
            if fit.temp_range is not None and temps is not None:
                lo, hi = fit.temp_range
                out = [d for d in r_days if not lo <= temps[d] <= hi]
                if out:
                    warnings.append(
                        f"{len(out)} reporting days lie outside the baseline's temperature "
                        f"range ({lo:.1f}..{hi:.1f} °C): the model extrapolates"
                    )
        else:
            warnings.append("no reporting day with data: no savings")
    if numbers is not None and numbers.fsu_g14 is not None and numbers.fsu_g14 >= G14_MAX_FSU:
        warnings.append(
            f"the savings are within their uncertainty: ±{numbers.fsu_g14:.0%} of the "
            "savings at 68% confidence (Guideline 14 asks for less than 50%)"
        )
    price = _energy_price(rc, b, meters, inp.reporting, inp.now, inp.hourly)
    daily: list[DayOut] = []
    counted = set(r_days) if numbers is not None else set()
    for d in inp.reporting.days:
        t = temps.get(d) if temps is not None else None
        pred = None
        if fit is not None and (temps is None or t is not None):
            pred = float(fit.predict([d], None if t is None else [t])[0])
        metered = rep_kwh.get(d)
        daily.append(
            DayOut(
                day=d,
                segment=segment_of(d, fit.split if fit is not None else False),
                temperature_c=_r(t, 2) if t is not None else None,
                metered_kwh=_r(metered, _KWH) if metered is not None else None,
                predicted_kwh=_r(pred, _KWH) if pred is not None else None,
                counted=d in counted,
            )
        )
    uncertainty = None
    if numbers is not None:
        uncertainty = UncertaintyOut(
            confidence=CONFIDENCE,
            kwh=_r(numbers.uncertainty, _KWH),
            fraction_of_savings=_r(numbers.fsu, _FRAC) if numbers.fsu is not None else None,
            fraction_of_savings_68=(
                _r(numbers.fsu_g14, _FRAC) if numbers.fsu_g14 is not None else None
            ),
            meets_g14=numbers.fsu_g14 < G14_MAX_FSU if numbers.fsu_g14 is not None else None,
            t=_r(numbers.t, 4),
            n=fit.stats.n if fit is not None else 0,
            n_effective=_r(numbers.n_effective, 1),
            autocorrelation=_r(numbers.rho, 4),
            m=numbers.days,
            formula="1.26 × t × CV(RMSE) × sqrt((n/n') × (1 + 2/n') / m) × predicted kWh "
            "(ASHRAE Guideline 14-2014 Annex B)",
        )
    return BuildingSavings(
        building=b,
        name=rc.buildings[b].name,
        meters=[m.id for m in meters],
        status="ok" if numbers is not None else "insufficient_data",
        baseline_days_used=len(b_days),
        baseline_missing_days=len(b_missing),
        baseline_missing_fraction=_r(missing_frac, _FRAC),
        reporting_days_used=len(r_days),
        reporting_missing_days=len(r_missing),
        reporting_days_pending=pending,
        missing_days=b_missing + r_missing,
        model=[_model_out(seg, m, fit.segment_stats[seg]) for seg, m in fit.models.items()]
        if fit is not None
        else [],
        fit=_fit_out(fit.stats) if fit is not None else None,
        limits=limits,
        verdict=verdict,
        predicted_kwh=_r(numbers.predicted, _KWH) if numbers is not None else None,
        metered_kwh=_r(numbers.metered, _KWH) if numbers is not None else None,
        savings_kwh=_r(numbers.savings, _KWH) if numbers is not None else None,
        savings_fraction=(
            _r(numbers.fraction, _FRAC)
            if numbers is not None and numbers.fraction is not None
            else None
        ),
        price_per_kwh=price.per_kwh,
        price_basis=price.basis,
        savings_money=(
            _r(numbers.savings * price.per_kwh, 2)
            if numbers is not None and price.per_kwh is not None
            else None
        ),
        uncertainty=uncertainty,
        events=events,
        warnings=warnings,
        daily=daily,
    )
