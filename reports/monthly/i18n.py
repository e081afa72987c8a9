"""zh-CN and en strings and number formats of the monthly report.

One table of ``key -> (zh-CN, en)`` so a missing translation is a KeyError in the tests rather
than a half-English page; :class:`Tr` also formats numbers, units, dates and months the way each
audience reads them (``2024年3月`` vs ``March 2024``, ``元`` vs ``CNY``).
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Literal

Lang = Literal["zh-CN", "en"]
LANGS: tuple[Lang, ...] = ("zh-CN", "en")
DASH = "—"

STRINGS: dict[str, tuple[str, str]] = {
    # report frame
    "report.title": ("月度管理报告", "Monthly management report"),
    "report.summary": ("项目总览", "Portfolio summary"),
    "report.generated": ("生成时间", "Generated"),
    "report.data_until": ("数据截至", "Data until"),
    "report.timezone": ("时区", "Time zone"),
    "report.period": ("报告期", "Period"),
    "report.buildings": ("楼栋", "Buildings"),
    "report.floor_area": ("建筑面积", "Floor area"),
    "report.page": ("第 {page} 页 / 共 {pages} 页", "Page {page} of {pages}"),
    "report.contents": ("目录", "Contents"),
    "report.overview": ("各楼栋概况", "Buildings at a glance"),
    "report.building": ("楼栋", "Building"),
    "report.month_running": (
        "本月尚未结束：数据截至 {until}。",
        "The month is not over: data until {until}.",
    ),
    # section frame
    "section.energy": ("能耗与电费", "Energy and cost"),
    "section.savings": ("节能量核证", "Verified energy savings"),
    "section.uptime": ("设备可用率（电梯）", "Availability (elevators)"),
    "section.water": ("用水与漏水", "Water and leaks"),
    "section.maintenance": ("维修工单", "Maintenance tickets"),
    "section.not_available": (
        "本部分暂不可用：{reason}",
        "This section is not available: {reason}",
    ),
    "section.not_installed": (
        "报表模块 {module} 尚未安装",
        "the report module {module} is not installed",
    ),
    "section.failed": ("生成时出错（{error}）", "it failed to build ({error})"),
    "section.no_data": ("本期无数据", "no data in this period"),
    # completeness
    "completeness.title": ("数据完整率（按表计）", "Data completeness per meter"),
    "completeness.meter": ("表计", "Meter"),
    "completeness.kind": ("类型", "Kind"),
    "completeness.metric": ("指标", "Metric"),
    "completeness.hours": ("有数据小时 / 总小时", "Hours with data / hours"),
    "completeness.value": ("完整率", "Completeness"),
    "completeness.worst": ("数据完整率（最低）", "Completeness (lowest meter)"),
    "completeness.none": ("本楼栋未配置表计", "No meters configured in this building"),
    "completeness.partial": ("{pct}（{hours} 小时）", "{pct} ({hours} h)"),
    "completeness.in_energy": (
        "电表的数据完整率见上方「各表计用电量与数据完整率」表。",
        "The power meters' data completeness is in 'Energy and data completeness per meter' above.",
    ),
    "kind.power_meter": ("电表", "Power meter"),
    "kind.water_meter": ("水表", "Water meter"),
    "kind.elevator": ("电梯", "Elevator"),
    "kind.sensor": ("传感器", "Sensor"),
    # axes and legends shared by charts
    "axis.day": ("日期", "Day"),
    "axis.meter": ("表计", "Meter"),
    "axis.elevator": ("电梯", "Elevator"),
    "axis.night": ("夜间", "Night"),
    "axis.building": ("楼栋", "Building"),
    "target": ("目标", "Target"),
    "chart.no_data": ("无数据", "No data"),
    "chart.alt.range": (
        "{title}：{n} 个数据点，最低 {lo}（{lo_at}），最高 {hi}（{hi_at}），合计 {total}。",
        "{title}: {n} values, lowest {lo} ({lo_at}), highest {hi} ({hi_at}), total {total}.",
    ),
    "chart.alt.empty": ("{title}：本期无数据。", "{title}: no data in this period."),
    "chart.alt.target": (
        "{below} 项低于目标 {target}。",
        "{below} of them below the target of {target}.",
    ),
    "chart.alt.limit": ("{below} 项高于 {target}。", "{below} of them above {target}."),
    "chart.alt.series": ("{name} 合计 {total}", "{name} total {total}"),
    # energy
    "energy.total": ("总用电量", "Total energy"),
    "energy.cost": ("电费", "Energy cost"),
    "energy.intensity": ("单位面积能耗", "Energy use intensity"),
    "energy.vs_previous": ("环比（上月）", "vs previous month"),
    "energy.vs_last_year": ("同比（去年同月）", "vs same month last year"),
    "energy.budget": ("预算执行", "Budget used"),
    "energy.base_load": ("夜间基础负荷", "Night base load"),
    "energy.peak_demand": ("最大需量（15 分钟）", "Peak demand (15 min)"),
    "energy.daily": ("每日用电量", "Daily energy"),
    "energy.compared": ("{month}：{value}", "{month}: {value}"),
    "energy.compared_partial": (
        "{month}：{value}（数据仅 {share}，不作比较）",
        "{month}: {value} (only {share} recorded; not compared)",
    ),
    "energy.cost_parts": (
        "电度 {energy} · 基本 {fixed} · 需量 {demand}",
        "energy {energy} · fixed {fixed} · demand {demand}",
    ),
    "energy.budget_used": (
        "预算 {budget}，本月已过 {elapsed}",
        "budget {budget}, {elapsed} of the month gone",
    ),
    "energy.peak_at": ("{at}", "at {at}"),
    "energy.no_tariff": (
        "未配置电价：不计电费与分时电量。",
        "No tariff configured: no cost or time-of-use split.",
    ),
    "energy.cost_col": ("电费", "Cost"),
    "energy.peak_col": ("最大需量", "Peak demand"),
    "energy.tou": ("分时电量（尖峰/峰/平/谷）", "Time-of-use split (sharp/peak/flat/valley)"),
    "energy.tou_share": ("{band}时段 {share}", "{band} {share}"),
    "energy.meters": ("各表计用电量", "Energy per meter"),
    "energy.meters_completeness": (
        "各表计用电量与数据完整率",
        "Energy and data completeness per meter",
    ),
    "energy.meter": ("表计", "Meter"),
    "energy.kwh": ("电量", "Energy"),
    "energy.y": ("电量 (kWh)", "Energy (kWh)"),
    "energy.buildings": ("各楼栋用电量", "Energy per building"),
    "band.sharp": ("尖峰", "Sharp peak"),
    "band.peak": ("峰", "Peak"),
    "band.flat": ("平", "Flat"),
    "band.valley": ("谷", "Valley"),
    # savings
    "savings.saved": ("节能量", "Energy saved"),
    "savings.saved_pct": ("节能率", "Savings"),
    "savings.cost": ("节约电费", "Cost avoided"),
    "savings.predicted_total": ("调整后基准用电量", "Adjusted baseline"),
    "savings.metered_total": ("实测用电量", "Metered"),
    "savings.chart": ("调整后基准与实测（每日）", "Adjusted baseline vs metered (daily)"),
    "savings.predicted": ("调整后基准（模型预测）", "Adjusted baseline (model)"),
    "savings.metered": ("实测", "Metered"),
    "savings.fit": ("基准模型拟合质量", "Baseline model fit"),
    "savings.n": ("n（天）", "n (days)"),
    "savings.r2": ("R²", "R²"),
    "savings.cv_rmse": ("CV(RMSE)", "CV(RMSE)"),
    "savings.nmbe": ("NMBE", "NMBE"),
    "savings.limit": ("限值", "Limit"),
    "savings.limit_text": (
        "{name}：CV(RMSE) ≤ {cv}，|NMBE| ≤ {nmbe}",
        "{name}: CV(RMSE) ≤ {cv}, |NMBE| ≤ {nmbe}",
    ),
    "savings.verdict": ("结论", "Verdict"),
    "savings.uncertainty": ("不确定度", "Uncertainty"),
    "savings.uncertainty_text": ("± {value}（置信度 {conf}）", "± {value} ({conf} confidence)"),
    "savings.model": ("模型", "Model"),
    "savings.baseline": ("基准期", "Baseline period"),
    "savings.events": ("非常规事件", "Non-routine events"),
    "savings.saved_detail": (
        "± {unc}（置信度 {conf}）· {verdict}",
        "± {unc} at {conf} · {verdict}",
    ),
    "savings.per_building": ("各楼栋节能量及拟合质量", "Savings and fit per building"),
    "savings.total_detail": (
        "各楼栋合计；不确定度按平方和合成（置信度 {conf}）",
        "sum of the buildings; uncertainty combined in quadrature ({conf} confidence)",
    ),
    "savings.status_insufficient": (
        "数据不足，无法核证节能量：{why}",
        "Not enough data to verify savings: {why}",
    ),
    "savings.baseline_text": (
        "基准期 {first} – {last}（{days} 天）",
        "Baseline {first} – {last} ({days} days)",
    ),
    "savings.no_buildings": (
        "没有可核证节能量的楼栋（需配置总表）。",
        "No building with a main power meter to verify.",
    ),
    "form.intercept_only": ("常数模型（未做气温修正）", "intercept only (not weather-normalised)"),
    "form.hdd": ("采暖度日 HDD", "HDD"),
    "form.cdd": ("制冷度日 CDD", "CDD"),
    "form.hdd_cdd": ("HDD + CDD", "HDD + CDD"),
    "segment.all": ("", ""),
    "segment.weekday": ("工作日", "weekdays"),
    "segment.weekend": ("周末", "weekends"),
    "verdict.pass": ("通过", "pass"),
    "verdict.warn": ("警告：超出限值，结果仅供参考", "warn: outside the limits, indicative only"),
    "verdict.fail": ("不通过", "fail"),
    "verdict.insufficient_data": ("数据不足", "insufficient data"),
    "verdict.no_baseline": ("无基准", "no baseline"),
    # uptime
    "uptime.availability": ("可用率 A", "Availability A"),
    "uptime.bounds": ("区间 {low} – {high}", "bounds {low} – {high}"),
    "uptime.coverage": ("数据覆盖率", "Data coverage"),
    "uptime.intact": ("设备完好率", "Equipment intact rate"),
    "uptime.intact_detail": ("{good} / {all} 台完好", "{good} of {all} in good order"),
    "uptime.mtbf": ("平均无故障时间 MTBF", "MTBF"),
    "uptime.mttr": ("平均修复时间 MTTR", "MTTR"),
    "uptime.failures": ("故障次数", "Failures"),
    "uptime.entrapments": ("困人次数", "Entrapments"),
    "uptime.chart": ("各电梯可用率与目标", "Availability per elevator vs target"),
    "uptime.y": ("可用率 (%)", "Availability (%)"),
    "uptime.assets": ("各电梯运行情况", "Elevators"),
    "uptime.asset": ("电梯", "Elevator"),
    "uptime.up": ("正常", "Up"),
    "uptime.down": ("故障停梯", "Down"),
    "uptime.planned": ("计划检修", "Planned"),
    "uptime.unknown": ("无数据", "Unknown"),
    "uptime.insufficient": ("数据不足", "insufficient data"),
    "uptime.insufficient_detail": (
        "数据不足（覆盖率 < {min}）",
        "insufficient data (coverage < {min})",
    ),
    "uptime.over_limit": ("{n} 次救援超时（> {limit} 分钟）", "{n} rescues over {limit} min"),
    "uptime.no_assets": ("本范围内没有电梯数据。", "No elevator data in this scope."),
    "uptime.bounds_col": ("下限 – 上限", "Low – high"),
    "uptime.restorations_detail": ("修复 {n} 次", "restored {n}×"),
    # water
    "water.total": ("总用水量", "Total water"),
    "water.cost": ("水费", "Water cost"),
    "water.leaks": ("漏水事件", "Leak episodes"),
    "water.loss": ("估计漏损水量", "Estimated loss"),
    "water.loss_cost": ("估计漏损费用", "Estimated loss cost"),
    "water.unaccounted": ("未计量水量（总表 − 分表）", "Unaccounted (main − sub-meters)"),
    "water.chart": ("各漏水事件估计漏损", "Estimated loss per leak episode"),
    "water.chart_daily": ("每日用水量", "Daily water use"),
    "water.y_loss": ("估计漏损 (m³)", "Estimated loss (m³)"),
    "water.y_daily": ("用水量 (m³)", "Water (m³)"),
    "water.episodes": ("漏水事件明细", "Leak episodes"),
    "water.meter": ("水表", "Meter"),
    "water.start": ("开始", "Start"),
    "water.end": ("结束", "End"),
    "water.open": ("仍在持续", "still open"),
    "water.mnf": ("最小夜间流量", "Min night flow"),
    "water.reason": ("判定依据", "Why"),
    "water.no_leaks": ("本期未发现漏水。", "No leaks found in this period."),
    "water.chart_mnf": ("每晚最小夜间流量与阈值", "Minimum night flow per night vs threshold"),
    "water.chart_loss": ("各楼栋估计漏损", "Estimated leak loss per building"),
    "water.y_mnf": ("最小夜间流量 (m³/h)", "Min night flow (m³/h)"),
    "water.threshold": ("阈值 {value}", "threshold {value}"),
    "water.share": ("占总表 {share}", "{share} of the main"),
    "water.open_count": ("{n} 起仍在持续", "{n} still open"),
    "water.nights": ("夜数", "Nights"),
    "water.no_meters": ("本范围内没有水表。", "No water meters in this scope."),
    "water.rule": (
        "最小夜间流量取 {night} 内最低的 {rolling} 分钟平均流量；连续 {n} 晚超过阈值即判定漏水。",
        "Minimum night flow: lowest {rolling}-minute mean flow in {night}; "
        "{n} high nights in a row open a leak.",
    ),
    # maintenance
    "maint.opened": ("新建工单", "Tickets opened"),
    "maint.resolved": ("已解决工单", "Tickets resolved"),
    "maint.open_end": ("期末未结工单", "Open at month end"),
    "maint.on_time": ("维修及时率", "Repairs on time"),
    "maint.on_time_detail": ("目标 ≥ {target}", "target ≥ {target}"),
    "maint.mttr": ("平均修复时间", "Mean time to repair"),
    "maint.mttr_net": ("扣除挂起 {net}", "net of hold {net}"),
    "maint.overdue": ("其中超期 {n}", "{n} overdue"),
    "maint.mtta": ("平均响应时间", "Mean time to acknowledge"),
    "maint.on_time_rate": ("及时率", "On time"),
    "maint.open_at_end": ("期末未结", "Open at end"),
    "maint.repeats": ("重复维修", "Repeat repairs"),
    "maint.categories": ("按类别", "By category"),
    "maint.category": ("类别", "Category"),
    "maint.chart": ("各类别工单数", "Tickets per category"),
    "maint.y": ("工单数", "Tickets"),
}

_MONTHS_EN = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def check_lang(lang: str) -> Lang:
    if lang == "zh-CN":
        return "zh-CN"
    if lang == "en":
        return "en"
    raise ValueError(f"unknown language {lang!r}; use one of {', '.join(LANGS)}")


class Tr:
    """Strings and number formats of one language."""

    def __init__(self, lang: str, currency: str = "CNY") -> None:
        self.lang: Lang = check_lang(lang)
        self.currency = currency
        self._i = 0 if self.lang == "zh-CN" else 1

    def __call__(self, key: str, **kw: object) -> str:
        text = STRINGS[key][self._i]
        return text.format(**kw) if kw else text

    @property
    def zh(self) -> bool:
        return self.lang == "zh-CN"

    # -- numbers ----------------------------------------------------------------------------
    def num(self, v: float | None, digits: int = 1) -> str:
        if v is None or not math.isfinite(v):
            return DASH
        text = f"{v:,.{digits}f}"
        # -0.004 rounds to "-0.00": a sign on zero reads as a finding that is not there.
        return text[1:] if text.startswith("-") and text.strip("-0.,") == "" else text

    def unit(self, unit: str) -> str:
        """A unit as printed: the currency in the reader's words, m3 as m³."""
        if unit == "CNY" and self.zh:
            return "元"
        if unit == "h" and self.zh:
            return "小时"
        return {"m3": "m³", "m2": "m²", "kWh/m2": "kWh/m²", "m3/h": "m³/h"}.get(unit, unit)

    def qty(self, v: float | None, unit: str, digits: int = 1) -> str:
        if v is None or not math.isfinite(v):
            return DASH
        if unit == "%":
            return self.pct(v, digits)
        u = self.unit(unit)
        return f"{self.num(v, digits)} {u}" if u else self.num(v, digits)

    def pct(self, v: float | None, digits: int = 1) -> str:
        """``v`` already in percent (99.15 -> '99.2 %')."""
        if v is None or not math.isfinite(v):
            return DASH
        return f"{self.num(v, digits)}%" if self.zh else f"{self.num(v, digits)} %"

    def signed_pct(self, v: float | None, digits: int = 1) -> str:
        if v is None or not math.isfinite(v):
            return DASH
        sign = "+" if v > 0 else ""
        return sign + self.pct(v, digits)

    # -- dates ------------------------------------------------------------------------------
    def month(self, d: date) -> str:
        return f"{d.year}年{d.month}月" if self.zh else f"{_MONTHS_EN[d.month - 1]} {d.year}"

    def day(self, d: date) -> str:
        return f"{d.month}月{d.day}日" if self.zh else f"{d.day} {_MONTHS_EN[d.month - 1][:3]}"

    def when(self, t: datetime) -> str:
        return f"{t:%Y-%m-%d %H:%M}"
