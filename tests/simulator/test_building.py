"""SimulatedBuilding: the demo site, back-fill history, and real Modbus TCP servers on loopback."""

from __future__ import annotations

import asyncio
import math
import random
import socket
import time
from collections import defaultdict
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from collector.codec import decode, encode
from collector.modbus import ModbusCollector
from collector.profile import load_profile
from collector.tags import device_tags
from config import load_config
from config.models import Device, SiteConfig
from simulator import DEMO_SITE, SimulatedBuilding, WaterMeterParams, with_ports
from simulator.building import POLLED_CHUNK, roundtrip
from simulator.models import ElevatorModel, ElevatorParams, OutdoorSensorModel, PowerMeterModel
from store.columnar import ReadingBatch
from store.reading import Reading

NOW = datetime(2025, 3, 10, 6, 0, tzinfo=UTC)  # Monday 14:00 in Shanghai
PROFILES = (
    "generic_power_meter_3p",
    "elevator_gbt24476",
    "generic_water_meter",
    "generic_outdoor_th",
)


@pytest.fixture(scope="module")
def demo() -> SiteConfig:
    return load_config(DEMO_SITE)


def polled(config: SiteConfig) -> list[Device]:
    """The devices served over Modbus (the MQTT sensors publish instead)."""
    return [d for d in config.devices if d.source.type != "mqtt"]


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


async def read_device(port: int, unit_id: int, profile_name: str) -> dict[str, float]:
    """Read every register of a profile the way a user's Modbus tool would, and decode it."""
    profile = load_profile(profile_name)
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2)
    assert await client.connect()
    try:
        lo = min(r.address for r in profile.registers)
        hi = max(r.address + r.count for r in profile.registers)
        rr = await client.read_holding_registers(lo, count=hi - lo, device_id=unit_id)
        assert not rr.isError(), rr
        words = rr.registers
        return {
            r.metric: decode(r, words[r.address - lo : r.address - lo + r.count])
            for r in profile.registers
        }
    finally:
        client.close()


# --------------------------------------------------------------------------- demo site


def test_demo_site_config(demo: SiteConfig) -> None:
    assert demo.site.id == "demo"
    assert demo.site.timezone == "Asia/Shanghai"
    kinds = sorted(d.kind for d in demo.devices)
    assert kinds == ["elevator"] * 2 + ["power_meter"] * 2 + ["sensor"] * 3 + ["water_meter"] * 2
    assert {d.source.profile for d in polled(demo)} == set(PROFILES)
    mqtt = {d.id: d.tags["probe"] for d in demo.devices if d.source.type == "mqtt"}
    assert mqtt == {"mall-shaft-busbar": "busbar_temperature", "mall-b2-leak": "water_leak"}
    polls = {d.id: d.poll_interval.total_seconds() for d in demo.devices}
    assert polls == {d.id: 15.0 if d.kind == "elevator" else 5.0 for d in demo.devices}
    lifts = [d for d in demo.devices if d.kind == "elevator"]
    assert {(d.source.host, d.source.port) for d in lifts} == {("127.0.0.1", 15030)}
    assert sorted(d.source.unit_id for d in lifts) == [1, 2]
    rules = {r.id: (r.metric, r.above, r.severity, r.fault_class, r.latched) for r in demo.rules}
    assert rules == {
        "elevator-fault": ("fault_code", 0, "major", "elevator_fault", False),
        "elevator-entrapment": ("entrapment", 0, "critical", "entrapment", True),
        "shaft-busbar-over-temperature": ("temperature", 70, "major", "overtemp", True),
    }
    assert demo.reports.water.price_per_m3 > 0  # leak costs in money
    assert demo.oncall.fallback == demo.oncall.people[0].id
    tower = next(b for b in demo.buildings if b.id == "mall-tower")
    assert (tower.basement_floors, tower.floors) == (2, 20)


def test_default_params_follow_the_buildings(demo: SiteConfig) -> None:
    sim = SimulatedBuilding(demo)
    peaks = {}
    for dev in ("mall-main-meter", "office-main-meter"):
        model = sim.model(dev)
        assert isinstance(model, PowerMeterModel)
        peaks[dev] = model.params.peak_kw
    assert peaks == {"mall-main-meter": 300.0, "office-main-meter": 180.0}
    lift = sim.model("mall-elevator-1")
    assert isinstance(lift, ElevatorModel)
    assert (lift.params.lowest_floor, lift.params.top_floor) == (-2, 20)
    # Air conditioning follows the weather the outdoor sensor reads.
    office = sim.model("office-main-meter")
    sensor = sim.model("outdoor-temp")
    assert isinstance(office, PowerMeterModel) and isinstance(sensor, OutdoorSensorModel)
    p = office.params
    assert (p.cooling_per_c, p.heating_per_c, p.cooling_balance_c, p.heating_balance_c) == (
        0.025,
        0.012,
        18.0,
        12.0,
    )
    assert p.saving_from is None  # the demo adds the measure, not the defaults
    t = NOW.timestamp()
    assert office.weather.temperature_c(t) == sensor.weather.temperature_c(t)


def test_history_can_be_limited_to_some_metrics(demo: SiteConfig) -> None:
    start = NOW - timedelta(hours=2)
    want = {"energy_import", "outdoor_temperature", "service_mode"}
    some = SimulatedBuilding(demo, seed=3)
    batches = list(some.history(start, NOW, timedelta(minutes=15), metrics=want))
    assert len(batches) == 8
    got = {(r.device, r.metric) for r in batches[0]}
    assert got == {
        ("mall-main-meter", "energy_import"),
        ("office-main-meter", "energy_import"),
        ("mall-elevator-1", "service_mode"),
        ("mall-elevator-2", "service_mode"),
        ("outdoor-temp", "outdoor_temperature"),
    }
    assert all(len(b) == 5 for b in batches)
    # Devices left out still move on: counters stand where a full history leaves them.
    every = SimulatedBuilding(demo, seed=3)
    for _ in every.history(start, NOW, timedelta(minutes=5)):
        pass
    for dev in ("mall-water-main", "mall-main-meter", "mall-elevator-1"):
        assert some.values(dev) == every.values(dev)


# --------------------------------------------------------------------------- history


def test_history_readings_look_like_the_collectors(demo: SiteConfig) -> None:
    sim = SimulatedBuilding(demo, seed=3)
    start = NOW - timedelta(hours=2)
    batches = list(sim.history(start, NOW, timedelta(minutes=5)))
    assert len(batches) == 24
    assert [b[0].time for b in batches[:2]] == [start, start + timedelta(minutes=5)]
    assert all(len({r.time for r in b}) == 1 for b in batches)
    first = batches[0]
    by_device: dict[str, dict[str, Reading]] = defaultdict(dict)
    for r in first:
        by_device[r.device][r.metric] = r
    assert set(by_device) == {d.id for d in demo.devices}
    # The MQTT sensors' history comes in the same step batches.
    assert by_device["mall-shaft-busbar"]["temperature"].unit == "°C"
    assert 25 < by_device["mall-shaft-busbar"]["temperature"].value < 70
    assert by_device["mall-b2-leak"]["leak"].value in (0.0, 1.0)
    for dev in polled(demo):
        profile = load_profile(dev.source.profile)
        got = by_device[dev.id]
        assert set(got) == {r.metric for r in profile.registers} | {"device_up"}
        assert got["device_up"].value == 1.0
        for reg in profile.registers:
            assert got[reg.metric].unit == reg.unit
        tags = dict(got["device_up"].tags)
        assert tags == {
            **dev.tags,
            "site": "demo",
            "building": dev.location.building,
            "floor": dev.location.floor,
            "kind": dev.kind,
        }
    # Values are what the collector would decode: already on the register's grid.
    energy = by_device["mall-main-meter"]["energy_import"].value
    assert round(energy, 2) == energy


def test_live_counters_continue_from_the_history(demo: SiteConfig) -> None:
    start, end = NOW - timedelta(days=2), NOW
    backfilled = SimulatedBuilding(demo, seed=5)
    last: dict[tuple[str, str], float] = {}
    for batch in backfilled.history(start, end, timedelta(minutes=5)):
        for r in batch:
            last[(r.device, r.metric)] = r.value
    backfilled.update(end + timedelta(seconds=5))  # the first live poll
    # A building that never had a back-fill/live boundary stands at the same counters.
    continuous = SimulatedBuilding(demo, seed=5)
    for _ in continuous.history(start, end + timedelta(seconds=5), timedelta(minutes=7)):
        pass
    counters = {
        "energy_import": 30.0,  # kWh in 5 min 5 s at <= 300 kW
        "volume": 1.0,
        "run_count": 20.0,
        "running_hours": 0.2,
        "door_cycles": 40.0,
    }
    for dev in backfilled.device_ids:
        live = backfilled.values(dev)
        again = continuous.values(dev)
        for metric, bound in counters.items():
            if metric not in live:
                continue
            delta = live[metric] - last[(dev, metric)]
            assert 0.0 <= delta <= bound, (dev, metric, delta)
            assert live[metric] == again[metric]


def test_history_refuses_to_rewind_and_bad_arguments(demo: SiteConfig) -> None:
    sim = SimulatedBuilding(demo)
    with pytest.raises(ValueError, match="after start"):
        sim.history(NOW, NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        sim.history(datetime(2025, 1, 1), NOW)
    with pytest.raises(ValueError, match="positive"):
        sim.history(NOW - timedelta(hours=1), NOW, timedelta(0))
    sim.update(NOW)
    with pytest.raises(ValueError, match="before live updates"):
        sim.history(NOW - timedelta(hours=1), NOW)
    # Continuing from where it stands is fine.
    batches = list(sim.history(NOW, NOW + timedelta(minutes=10), timedelta(minutes=5)))
    assert len(batches) == 2


STATES = set(ElevatorModel.STATE_METRICS)


def test_polled_lift_states_come_at_the_poll_interval_as_the_collector_stores_them(
    demo: SiteConfig,
) -> None:
    busy = ElevatorParams(
        lowest_floor=-2, top_floor=20, faults_per_week=40.0, inspection_every_days=1
    )
    sim = SimulatedBuilding(demo, seed=3, params={"mall-elevator-1": busy})
    start = NOW - POLLED_CHUNK - timedelta(hours=6)
    steps: list[Sequence[Reading]] = []
    columns: list[ReadingBatch] = []
    for b in sim.history(start, NOW, timedelta(minutes=5), polled=STATES):
        if isinstance(b, ReadingBatch):
            columns.append(b)
        else:
            steps.append(b)
    assert len(steps) == 30 * 12 and len(columns) == 2  # a day, then the rest
    lifts = [d for d in demo.devices if d.kind == "elevator"]
    # In the columnar batches only: no (time, device, metric) is written twice.
    stepped = {(r.device, r.metric) for b in steps for r in b}
    assert not {(d.id, m) for d in lifts for m in STATES} & stepped
    assert {(d.id, "floor") for d in lifts} <= stepped
    rows = [r for c in columns for r in c]
    assert len({(r.time, r.device, r.metric) for r in rows}) == len(rows)
    units = {r.metric: r.unit for r in steps[0] if r.device == lifts[0].id} | {
        reg.metric: reg.unit for reg in load_profile("elevator_gbt24476").registers
    }
    replica = SimulatedBuilding(demo, seed=3, params={"mall-elevator-1": busy})
    replica.update(start)
    for lift in lifts:
        mine = sorted((r for r in rows if r.device == lift.id), key=lambda r: (r.time, r.metric))
        times = sorted({r.time for r in mine})
        every = lift.poll_interval
        assert every == timedelta(seconds=15)
        assert times[0] == start and times[-1] == NOW - every
        assert len(times) == (NOW - start) // every  # every poll, none missing
        for r in mine:
            assert dict(r.tags) == device_tags(demo.site.id, lift)  # as the collector tags them
            assert r.unit == units[r.metric] and r.quality == 0
        # The values the live model serves at each of those instants.
        model = replica.model(lift.id)
        for r in mine:
            model.advance(r.time.timestamp())
            assert r.value == model.values()[r.metric], r
    busy_modes = {
        r.value for r in rows if r.device == "mall-elevator-1" and r.metric == "service_mode"
    }
    assert busy_modes == {1.0, 2.0, 7.0}
    # Polling does not move the models: they stand where a plain history leaves them.
    plain = SimulatedBuilding(demo, seed=3, params={"mall-elevator-1": busy})
    for _ in plain.history(start, NOW, timedelta(minutes=5)):
        pass
    for lift in lifts:
        assert sim.values(lift.id) == plain.values(lift.id)


def test_polled_metrics_must_be_piecewise_constant(demo: SiteConfig) -> None:
    sim = SimulatedBuilding(demo)
    with pytest.raises(ValueError, match=r"mall-main-meter.*poll interval"):
        sim.history(NOW - timedelta(hours=1), NOW, polled={"energy_import"})
    with pytest.raises(ValueError, match=r"mall-elevator-1.*floor"):
        sim.history(NOW - timedelta(hours=1), NOW, polled={"floor", "fault_code"})
    # Polled metrics come even when the step batches hold none of the device's metrics.
    out = list(sim.history(NOW - timedelta(hours=1), NOW, timedelta(minutes=30),
                           metrics={"energy_import"}, polled={"fault_code"}))  # fmt: skip
    (polled,) = [b for b in out if isinstance(b, ReadingBatch)]
    assert len(polled) == 2 * 240 and {r.metric for r in polled} == {"fault_code"}


def test_history_shows_the_leak_nights(demo: SiteConfig) -> None:
    water = [d for d in demo.devices if d.kind == "water_meter"]
    sim = SimulatedBuilding(demo.model_copy(update={"devices": water}))
    start = NOW - timedelta(days=35)
    night_min: dict[tuple[str, str], float] = {}
    tz = sim._clock.tz
    for batch in sim.history(start, NOW, timedelta(minutes=10)):
        lt = batch[0].time.astimezone(tz)
        if not 2 <= lt.hour < 4:
            continue
        for r in batch:
            if r.metric == "flow_rate":
                key = (r.device, lt.date().isoformat())
                night_min[key] = min(night_min.get(key, math.inf), r.value)
    leaky = sorted(
        day for (dev, day), f in night_min.items() if dev == "mall-water-main" and f > 0.2
    )
    assert len(leaky) >= 5
    assert not [k for k, f in night_min.items() if k[0] == "office-water-main" and f > 0.05]


@pytest.mark.slow
def test_history_of_35_days_is_fast(demo: SiteConfig) -> None:
    sim = SimulatedBuilding(demo)
    started = time.perf_counter()
    n = sum(len(b) for b in sim.history(NOW - timedelta(days=35), NOW, timedelta(minutes=5)))
    took = time.perf_counter() - started
    assert n == 35 * 288 * (2 * 12 + 2 * 13 + 2 * 3 + 3 + 2)  # + 2 MQTT sensors
    assert took < 15.0  # typically 3-5 s; generous for a loaded CI machine


def test_roundtrip_matches_the_codec() -> None:
    rng = random.Random(4)
    for name in PROFILES:
        for reg in load_profile(name).registers:
            fast = roundtrip(reg)
            for _ in range(300):
                v = rng.choice(
                    [rng.uniform(-5, 300), rng.uniform(0, 1e6), float(rng.randint(0, 9))]
                )
                try:
                    want = decode(reg, encode(reg, v))
                except ValueError:
                    with pytest.raises(ValueError):
                        fast(v)
                    continue
                assert fast(v) == want, (reg.metric, v)


# --------------------------------------------------------------------------- Modbus


def test_served_registers_decode_to_the_model_values(demo: SiteConfig) -> None:
    async def main() -> None:
        sim = SimulatedBuilding(demo, seed=2)
        ports = await sim.start(now=NOW, free_ports=True)
        try:
            assert set(ports) == {d.id for d in polled(demo)}
            for dev in polled(demo):
                got = await read_device(ports[dev.id], dev.source.unit_id, dev.source.profile)
                assert got == sim.values(dev.id)
                model = sim.model(dev.id).values()
                for reg in load_profile(dev.source.profile).registers:
                    # Equal up to the register's resolution: float32, or the scaled integer.
                    tol = reg.scale / 2 if reg.type.startswith(("uint", "int")) else 0.0
                    want = pytest.approx(model[reg.metric], rel=1e-6, abs=tol + 1e-9)
                    assert got[reg.metric] == want, reg.metric
            power = await read_device(ports["mall-main-meter"], 1, "generic_power_meter_3p")
            assert 200 < power["active_power"] < 330  # Monday 14:00: near the 300 kW peak
        finally:
            await sim.stop()

    run(main())


def test_a_shared_gateway_serves_each_unit_id(demo: SiteConfig) -> None:
    async def main() -> None:
        sim = SimulatedBuilding(demo)
        ports = await sim.start(now=NOW, free_ports=True)
        try:
            port = ports["mall-elevator-1"]
            assert ports["mall-elevator-2"] == port
            assert len(set(ports.values())) == 6  # seven devices, two behind one gateway
            one = await read_device(port, 1, "elevator_gbt24476")
            two = await read_device(port, 2, "elevator_gbt24476")
            assert one == sim.values("mall-elevator-1")
            assert two == sim.values("mall-elevator-2")
            assert one["run_count"] != two["run_count"]
            client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2)
            await client.connect()
            try:
                rr = await client.read_holding_registers(0, count=2, device_id=9)
                assert rr.isError() and rr.exception_code == 0x0B  # gateway: no such unit
                rr = await client.write_register(0, 5, device_id=1)  # read-only device
                assert rr.isError()
                rr = await client.read_holding_registers(200, count=2, device_id=1)
                assert rr.isError() and rr.exception_code == 0x02
                rr = await client.read_input_registers(0, count=2, device_id=1)
                assert rr.isError() and rr.exception_code == 0x02  # profile uses holding only
            finally:
                client.close()
            assert await read_device(port, 1, "elevator_gbt24476") == one  # write changed nothing
        finally:
            await sim.stop()

    run(main())


def test_inject_fault_shows_in_the_registers(demo: SiteConfig) -> None:
    async def main() -> None:
        sim = SimulatedBuilding(demo)
        ports = await sim.start(now=NOW, free_ports=True)
        try:
            sim.inject_fault("mall-elevator-2", 31, timedelta(minutes=4), entrapment=True)
            port = ports["mall-elevator-2"]
            got = await read_device(port, 2, "elevator_gbt24476")
            assert got["fault_code"] == 31
            assert got["service_mode"] == 7  # out of service
            assert got["running"] == 0
            assert got["entrapment"] == 1
            assert (await read_device(port, 1, "elevator_gbt24476"))["fault_code"] == 0
            sim.update(NOW + timedelta(minutes=5))
            after = await read_device(port, 2, "elevator_gbt24476")
            assert after["fault_code"] == 0
            assert after["entrapment"] == 0
            with pytest.raises(ValueError, match="not an elevator"):
                sim.inject_fault("mall-main-meter", 1, 60)
        finally:
            await sim.stop()

    run(main())


def test_the_collector_reads_the_building_through_with_ports(demo: SiteConfig) -> None:
    async def main() -> None:
        sim = SimulatedBuilding(demo)
        ports = await sim.start(now=NOW, free_ports=True)
        live = with_ports(demo, ports)
        assert [d.source.port for d in polled(live)] == [ports[d.id] for d in polled(demo)]
        collector = ModbusCollector(live.devices, lambda _: None, site_id=live.site.id)
        try:
            for dev in polled(live):
                readings = {r.metric: r for r in await collector.poll_device(dev.id)}
                assert readings["device_up"].value == 1.0
                for metric, value in sim.values(dev.id).items():
                    assert readings[metric].value == value
                    assert readings[metric].tags == readings["device_up"].tags
        finally:
            collector.close()
            await sim.stop()

    run(main())


def test_configured_ports_are_used_when_free_and_replaced_when_taken(demo: SiteConfig) -> None:
    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    wanted = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = int(blocker.getsockname()[1])
    config = with_ports(
        demo,
        {
            "mall-elevator-1": wanted,
            "mall-elevator-2": wanted,
            "mall-main-meter": taken,
            "office-main-meter": free_port(),
            "mall-water-main": free_port(),
            "office-water-main": free_port(),
        },
    )

    async def main() -> None:
        sim = SimulatedBuilding(config)
        try:
            ports = await sim.start(now=NOW)
            assert ports["mall-elevator-1"] == ports["mall-elevator-2"] == wanted
            assert ports["mall-main-meter"] not in (taken, 0)
            got = await read_device(ports["mall-main-meter"], 1, "generic_power_meter_3p")
            assert got == sim.values("mall-main-meter")
        finally:
            await sim.stop()

    try:
        run(main())
    finally:
        blocker.close()


def test_devices_answer_busy_until_the_first_update_and_run_updates(demo: SiteConfig) -> None:
    async def main() -> None:
        sim = SimulatedBuilding(demo)
        ports = await sim.start(free_ports=True)
        task: asyncio.Task[None] | None = None
        client = AsyncModbusTcpClient("127.0.0.1", port=ports["mall-water-main"], timeout=2)
        try:
            await client.connect()
            rr = await client.read_holding_registers(0, count=4, device_id=1)
            assert rr.isError() and rr.exception_code == 0x06  # device busy, not fake zeros
            task = asyncio.create_task(sim.run(interval=0.05))
            for _ in range(100):
                rr = await client.read_holding_registers(0, count=4, device_id=1)
                if not rr.isError():
                    break
                await asyncio.sleep(0.02)
            assert not rr.isError()
            # run() follows the wall clock: the model stands at about now.
            model_time = sim.model("mall-water-main").time
            assert model_time is not None and abs(model_time - time.time()) < 5
        finally:
            client.close()
            await sim.stop()
            if task is not None:
                await asyncio.wait_for(task, 2)

    run(main())


def test_bad_configs_are_refused(demo: SiteConfig) -> None:
    lifts = [d for d in demo.devices if d.kind == "elevator"]
    clash = lifts[1].model_copy(
        update={"source": lifts[1].source.model_copy(update={"unit_id": 1})}
    )
    config = demo.model_copy(update={"devices": [lifts[0], clash]})
    with pytest.raises(ValueError, match="unit id 1"):
        SimulatedBuilding(config)
    with pytest.raises(TypeError, match="PowerMeterParams"):
        SimulatedBuilding(demo, params={"mall-main-meter": WaterMeterParams()})
    with pytest.raises(KeyError, match="nope"):
        SimulatedBuilding(demo, params={"nope": WaterMeterParams()})
    with pytest.raises(KeyError, match="nope"):
        with_ports(demo, {"nope": 1})


def test_profiles_using_every_table(demo: SiteConfig, tmp_path: Path) -> None:
    """Bits (coils, discrete inputs) and input registers are served where the profile puts them."""
    profile = tmp_path / "lift_mixed.yaml"
    profile.write_text(
        "name: lift_mixed\n"
        "kind: elevator\n"
        "registers:\n"
        "  - {metric: running, table: discrete, address: 21, type: bit}\n"
        "  - {metric: entrapment, table: coil, address: 3, type: bit}\n"
        "  - {metric: floor, table: input, address: 100, type: int16}\n"
        "  - {metric: run_count, table: input, address: 102, type: uint32, word_order: CDAB}\n"
        "  - {metric: fault_code, table: holding, address: 7, type: uint16}\n",
        encoding="utf-8",
    )
    lift = next(d for d in demo.devices if d.id == "mall-elevator-1")
    lift = lift.model_copy(
        update={"source": lift.source.model_copy(update={"profile": str(profile)})}
    )
    config = demo.model_copy(update={"devices": [lift]})

    async def main() -> None:
        sim = SimulatedBuilding(config)
        ports = await sim.start(now=NOW, free_ports=True)
        client = AsyncModbusTcpClient("127.0.0.1", port=ports[lift.id], timeout=2)
        try:
            await client.connect()
            sim.inject_fault(lift.id, 12, 600, entrapment=True)
            want = sim.values(lift.id)
            coils = await client.read_coils(0, count=8, device_id=1)
            assert coils.bits[3] is True  # entrapment
            discrete = await client.read_discrete_inputs(21, count=1, device_id=1)
            assert discrete.bits[0] is False  # a faulted car does not run
            regs = await client.read_input_registers(100, count=4, device_id=1)
            p = load_profile(str(profile))
            assert decode(p.register("floor"), regs.registers[0:1]) == want["floor"]
            assert decode(p.register("run_count"), regs.registers[2:4]) == want["run_count"]
            assert want["run_count"] > 1000
            hold = await client.read_holding_registers(7, count=1, device_id=1)
            assert hold.registers == [12]
        finally:
            client.close()
            await sim.stop()

    run(main())
