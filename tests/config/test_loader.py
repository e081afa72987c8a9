"""The site-config loader as a user meets it: loaded configs, and the problem list of bad files."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from config.loader import (
    ConfigError,
    Problem,
    check_file,
    format_problems,
    load_config,
    load_config_text,
    sample_config,
)
from tests.config.helpers import MINIMAL, problems_of

CASES = Path(__file__).parent / "cases"
PROFILES = Path(__file__).parents[2] / "collector" / "profiles"



# -- valid files ------------------------------------------------------------------------------


def test_valid_file_loads_with_paths_relative_to_the_file() -> None:
    config = load_config(CASES / "valid.yaml", env={})

    assert config.site.name == "测试园区"
    assert config.site.timezone == "Asia/Shanghai"  # default
    meter = config.device("b1-main")
    assert meter.source.unit_id == 7
    assert meter.source.timeout == timedelta(milliseconds=250)
    assert meter.location.tenant == "物业"
    assert config.rules[0].for_ == timedelta(minutes=5)
    assert config.data_dir == CASES / "run" / "data"
    assert config.embedded_path == CASES / "store" / "readings.duckdb"
    assert config.outbox_path == Path("/var/tmp/facmon-outbox.db")  # absolute stays as given
    assert config.tickets_url == f"sqlite:///{CASES / 'run' / 'data' / 'tickets.db'}"
    # A profile given as a file is relative to the config file; a shipped name stays a name.
    assert config.device("b1-custom").source.profile == str(CASES / "profiles" / "my_sensor.yaml")
    assert meter.source.profile == "generic_power_meter_3p"
    assert check_file(CASES / "valid.yaml", env={}) == []


def test_default_data_dir_is_next_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(MINIMAL, encoding="utf-8")

    config = load_config(path, env={})

    assert config.data_dir == tmp_path / "facmon-data"
    assert config.embedded_path == tmp_path / "facmon-data" / "readings.duckdb"
    assert config.outbox_path == tmp_path / "facmon-data" / "outbox.db"


def test_text_paths_resolve_against_base_dir_or_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = MINIMAL + "data_dir: ../data\nstorage: {outbox: {path: q/outbox.db}}\n"

    config = load_config_text(text, env={}, base_dir=tmp_path / "etc")
    assert config.data_dir == tmp_path / "data"
    assert config.outbox_path == tmp_path / "etc" / "q" / "outbox.db"

    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert load_config_text(text, env={}).data_dir == tmp_path / "data"


# -- many problems at once ----------------------------------------------------------------------


def test_every_problem_is_reported_with_its_line_and_path() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(CASES / "many_problems.yaml", env={})
    lines = str(info.value).splitlines()

    assert lines == [
        "many_problems.yaml:5 site.timezone: unknown time zone 'Mars/Olympus' "
        "(use an IANA name such as Asia/Shanghai)",
        "many_problems.yaml:6 site.langauge: unknown field 'langauge' (did you mean 'language'?)",
        "many_problems.yaml:10 buildings[0].floor_area_m2: must be greater than 0",
        "many_problems.yaml:12 buildings[1].id: duplicate building id 'tower-a' (first at line 8)",
        "many_problems.yaml:20 devices[0].location.tenant: must be text, not a list",
        "many_problems.yaml:26 devices[1].location.building: unknown building 'tower-b' "
        "(did you mean 'tower-a'?)",
        "many_problems.yaml:30 devices[1].source.unit_id: must be 1..247",
        "many_problems.yaml:34 devices[2].kind: must be one of: power_meter, elevator, "
        "water_meter, sensor (got 'pump')",
        "many_problems.yaml:37 devices[2].source.type: unknown source type 'modbus_ascii' "
        "(expected one of: modbus_tcp, modbus_rtu_over_tcp, modbus_rtu, mqtt)",
        "many_problems.yaml:39 devices[3].id: duplicate device id 'meter-1' (first at line 17)",
        # A missing field points at the nearest parent that exists: the 'source:' line.
        "many_problems.yaml:43 devices[3].source.host: required field missing",
        "many_problems.yaml:46 devices[3].poll_interval: must be between 100ms and 1h",
        "many_problems.yaml:48 storage.backend: 'influxdb' needs an 'influxdb' block under "
        "'storage'",
        "many_problems.yaml:50 rules[0]: give exactly one of 'above' or 'below'",
        "many_problems.yaml:53 rules[0].select.devices[1]: unknown device 'elevator-9' "
        "(did you mean 'elevator-1'?)",
        "many_problems.yaml:53 rules[0].select.buildings[0]: unknown building 'tower-c' "
        "(did you mean 'tower-a'?)",
        "many_problems.yaml:60 oncall.fallback: unknown person 'li-na' (declared: zhang-wei)",
    ]
    first = info.value.problems[0]
    assert first == Problem(
        file=str(CASES / "many_problems.yaml"),
        line=5,
        path="site.timezone",
        message="unknown time zone 'Mars/Olympus' (use an IANA name such as Asia/Shanghai)",
    )
    assert check_file(CASES / "many_problems.yaml", env={}) == info.value.problems


def test_missing_sections_and_unknown_fields() -> None:
    text = """\
site:
  id: has space
devcies: []
buildings:
  - id: b1
    name: B1
    floors: 0
    colour: red
"""
    assert problems_of(text) == [
        "site.yaml:1 site.name: required field missing",
        "site.yaml:2 site.id: must be an identifier: start with a letter or digit, then letters, "
        "digits, '_', '-' or '.', at most 64 characters",
        "site.yaml:3 devcies: unknown field 'devcies' (did you mean 'devices'?)",
        "site.yaml:5 buildings[0].floor_area_m2: required field missing",
        "site.yaml:7 buildings[0].floors: must be 1..300",
        "site.yaml:8 buildings[0].colour: unknown field 'colour' (expected one of: id, name, "
        "floor_area_m2, floors, basement_floors)",
    ]


def test_wrong_shapes_and_duplicate_keys() -> None:
    text = (
        MINIMAL
        + """\
devices: {id: x}
api:
  port: 80
  port: http
rules:
  - id: r1
    name: R
    metric: m
    above: 1
    fault_class: f
    for: soon
"""
    )
    assert problems_of(text) == [
        "site.yaml:4 devices: must be a list (lines starting with '- '), not a mapping",
        "site.yaml:7 api.port: duplicate key 'port' (first at line 6)",
        "site.yaml:7 api.port: must be a whole number",
        "site.yaml:14 rules[0].for: expected a duration such as 10s, 5m or 1h, got 'soon'",
    ]


def test_missing_source_type_lists_the_choices() -> None:
    text = (
        MINIMAL
        + """\
devices:
  - id: d1
    name: D1
    kind: sensor
    location: {building: b1}
    source: {host: 10.0.0.1, profile: p}
"""
    )
    assert problems_of(text) == [
        "site.yaml:9 devices[0].source.type: required field missing "
        "(one of: modbus_tcp, modbus_rtu_over_tcp, modbus_rtu, mqtt)",
    ]


# -- cross-checks -------------------------------------------------------------------------------


def test_cross_checks_are_reported_beside_validation_errors() -> None:
    text = """\
site: {id: s1, name: Site}
buildings:
  - {id: b1, name: B1, floor_area_m2: 100, floors: 2}
  - {id: b2, name: B2, floor_area_m2: 100, floors: 2}
devices:
  - {id: d1, name: D1, kind: sensor, location: {building: b3},
     source: {type: modbus_tcp, host: h, profile: p}}
rules:
  - {id: r1, name: R, metric: m, above: 1, fault_class: f, select: {devices: [d2]}}
  - {id: r1, name: R, metric: m, above: 1, fault_class: f, severity: huge}
storage: {backend: influxdb, influxdb: null}
oncall:
  people: [{id: p1, name: P}, {id: p1, name: Q}]
  fallback: nobody
"""
    assert problems_of(text) == [
        "site.yaml:6 devices[0].location.building: unknown building 'b3' (declared: b1, b2)",
        "site.yaml:9 rules[0].select.devices[0]: unknown device 'd2' (declared: d1)",
        "site.yaml:10 rules[1].severity: must be one of: critical, major, minor, warning, info "
        "(got 'huge')",
        "site.yaml:10 rules[1].id: duplicate rule id 'r1' (first at line 9)",
        "site.yaml:11 storage.backend: 'influxdb' needs an 'influxdb' block under 'storage'",
        "site.yaml:13 oncall.people[1].id: duplicate person id 'p1' (first at line 13)",
        "site.yaml:14 oncall.fallback: unknown person 'nobody' (declared: p1)",
    ]


def test_no_building_cross_check_without_declared_buildings() -> None:
    text = """\
site: {id: s1, name: Site}
devices:
  - {id: d1, name: D1, kind: sensor, location: {building: b1},
     source: {type: modbus_tcp, host: h, profile: p}}
"""
    assert problems_of(text) == ["site.yaml:1 buildings: required field missing"]


# -- environment interpolation --------------------------------------------------------------------

INFLUX = (
    MINIMAL
    + """\
storage:
  backend: influxdb
  influxdb:
    url: http://${INFLUX_HOST}:8086
    token: ${INFLUX_TOKEN}
    org: $${literal}
    timeout: ${INFLUX_TIMEOUT}
"""
)


def test_env_values_are_interpolated_partly_and_escaped() -> None:
    env = {"INFLUX_HOST": "db.local", "INFLUX_TOKEN": "s3cr3t-t0ken", "INFLUX_TIMEOUT": "30s"}

    config = load_config_text(INFLUX, env=env)

    influx = config.storage.influxdb
    assert influx is not None
    assert influx.url == "http://db.local:8086"
    assert influx.token is not None and influx.token.get_secret_value() == "s3cr3t-t0ken"
    assert influx.org == "${literal}"
    assert influx.timeout == timedelta(seconds=30)


def test_env_values_are_not_interpolated_twice() -> None:
    env = {"INFLUX_HOST": "h", "INFLUX_TOKEN": "a${B}c", "INFLUX_TIMEOUT": "1s"}
    influx = load_config_text(INFLUX, env=env).storage.influxdb
    assert influx is not None and influx.token is not None
    assert influx.token.get_secret_value() == "a${B}c"


def test_unset_env_variable_is_a_problem_on_its_line() -> None:
    assert problems_of(INFLUX, env={"INFLUX_HOST": "h", "INFLUX_TIMEOUT": "1s"}) == [
        "site.yaml:8 storage.influxdb.token: environment variable INFLUX_TOKEN is not set",
    ]


def test_bad_env_reference_is_a_problem() -> None:
    text = MINIMAL + "api: {host: '${API HOST}'}\n"
    assert problems_of(text) == [
        "site.yaml:4 api.host: bad environment reference '${API HOST}': write ${NAME} with NAME "
        "made of letters, digits and '_' (and $${ for a literal ${)",
    ]


def test_a_secret_never_appears_in_problems() -> None:
    secret = "hunter2-very-secret"
    env = {"INFLUX_HOST": secret, "INFLUX_TOKEN": secret, "INFLUX_TIMEOUT": secret}

    found = problems_of(INFLUX + "api: {port: '${INFLUX_TOKEN}'}\n", env=env)

    assert found == [
        "site.yaml:10 storage.influxdb.timeout: expected a duration such as 10s, 5m or 1h, "
        "got '${INFLUX_TIMEOUT}'",
        "site.yaml:11 api.port: must be a whole number",
    ]


def test_load_config_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(MINIMAL.replace("name: Site", "name: '${SITE_NAME}'"), encoding="utf-8")
    monkeypatch.setenv("SITE_NAME", "滨江广场")
    assert load_config(path).site.name == "滨江广场"
    monkeypatch.delenv("SITE_NAME")
    assert [str(p) for p in check_file(path)] == [
        "site.yaml:1 site.name: environment variable SITE_NAME is not set"
    ]


# -- unreadable files ---------------------------------------------------------------------------


def test_yaml_syntax_error_has_its_line() -> None:
    text = MINIMAL + "devices:\n  - id: d1\n   name: bad indent\n"
    assert problems_of(text) == [
        "site.yaml:6: YAML syntax error: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block collection started at line 5)"
    ]


def test_empty_and_non_mapping_files() -> None:
    assert problems_of("# nothing yet\n") == [
        "site.yaml: the file is empty; see `facmon config sample` for a start"
    ]
    assert problems_of("- a\n- b\n") == [
        "site.yaml:1: the file must be a mapping of sections (site, buildings, devices, ...)"
    ]


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    problems = check_file(tmp_path / "nope.yaml")
    assert [str(p) for p in problems] == ["nope.yaml: cannot read file: No such file or directory"]


def test_problem_and_error_formatting() -> None:
    a = Problem("/etc/facmon/site.yaml", 42, "devices[3].source.unit_id", "must be 1..247")
    b = Problem("site.yaml", None, "", "cannot read file: Permission denied")
    assert str(a) == "site.yaml:42 devices[3].source.unit_id: must be 1..247"
    assert format_problems([a, b]) == f"{a}\n{b}"
    assert str(ConfigError([a, b])) == f"{a}\n{b}"


# -- the shipped sample -------------------------------------------------------------------------


def test_sample_config_is_valid_without_any_environment() -> None:
    config = load_config_text(sample_config(), filename="site.sample.yaml", env={})

    assert config.site.timezone == "Asia/Shanghai"
    assert len(config.buildings) == 2
    assert sorted(d.kind for d in config.devices) == ["elevator", "power_meter", "water_meter"]
    for device in config.devices:
        assert (PROFILES / f"{device.source.profile}.yaml").is_file()
    assert config.storage.backend == "embedded"
    (rule,) = config.rules
    assert (rule.metric, rule.above, rule.fault_class, rule.severity) == (
        "fault_code",
        0,
        "elevator_fault",
        "major",
    )
    assert config.oncall.fallback == config.oncall.people[0].id


def test_sample_file_passes_the_check() -> None:
    path = Path(__file__).parents[2] / "config" / "site.sample.yaml"
    assert path.read_text(encoding="utf-8") == sample_config()
    assert check_file(path, env={}) == []


def test_anchors_and_merge_keys_share_interpolated_values() -> None:
    text = MINIMAL + (
        "devices:\n"
        "  - id: d1\n"
        "    name: D1\n"
        "    kind: sensor\n"
        "    location: {building: b1}\n"
        "    source: &gw {type: modbus_tcp, host: '${GATEWAY}', profile: p, unit_id: 1}\n"
        "  - id: d2\n"
        "    name: D2\n"
        "    kind: sensor\n"
        "    location: {building: b1}\n"
        "    source:\n"
        "      <<: *gw\n"
        "      unit_id: 2\n"
    )
    config = load_config_text(text, env={"GATEWAY": "10.1.1.1"})
    assert [(d.source.host, d.source.unit_id) for d in config.devices] == [
        ("10.1.1.1", 1),
        ("10.1.1.1", 2),
    ]
    assert problems_of(text) == [
        "site.yaml:9 devices[0].source.host: environment variable GATEWAY is not set"
    ]


def test_reserved_tag_names_and_empty_tag_values_are_refused() -> None:
    text = sample_config().replace(
        "tags: {circuit: main}", "tags: {circuit: main, building: fake, unit: kWh}", 1
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, filename="site.yaml", env={})
    msg = str(info.value)
    assert "tag name(s) building, unit are reserved" in msg
    assert "site.yaml:51 devices[0].tags" in msg
    empty = sample_config().replace("tags: {circuit: main}", "tags: {circuit: ''}", 1)
    with pytest.raises(ConfigError) as info:
        load_config_text(empty, filename="site.yaml", env={})
    assert "tag(s) circuit have an empty value" in str(info.value)


def test_a_bare_floor_number_is_read_as_its_label() -> None:
    text = sample_config().replace("floor: B1}", "floor: 12}", 1)
    cfg = load_config_text(text, filename="site.yaml", env={})
    assert cfg.devices[0].location.floor == "12"
