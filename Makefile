# Two commands: `make demo` (install + run the simulated building) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.facmon-installed

.PHONY: demo demo-deps test lint system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

demo: $(STAMP) demo-deps
	$(VENV)/bin/facmon demo

# The demo's MQTT sensors publish to a Mosquitto it starts on loopback; without one (no root to
# install it) the demo still runs, without those two sensors, and says so.
demo-deps:
	@[ -x /usr/sbin/mosquitto ] || { \
	  echo "installing Debian package: mosquitto (the demo's MQTT broker)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; } \
	    || echo "could not install mosquitto: the demo runs without its MQTT sensors"; \
	}

# Debian packages the tests start themselves: influxd (InfluxDB 1.6 from Debian), mosquitto,
# socat (a pseudo-terminal pair stands in for an RS-485 cable in the serial Modbus tests) and
# chromium (browser tests of the web console); pango and a CJK font for the monthly report PDF;
# docker-compose (validates deploy/compose.yaml, no daemon needed), shellcheck (the systemd install
# script), mosquitto-clients (runs the broker's compose health check), systemd (systemd-analyze
# verifies the units), postgresql-client and sqlite3 (the documented ticket backups) for
# tests/deploy.
system-deps:
	@missing=""; \
	command -v influxd >/dev/null 2>&1 || missing="$$missing influxdb"; \
	command -v socat >/dev/null 2>&1 || missing="$$missing socat"; \
	[ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing="$$missing fonts-wqy-microhei"; \
	ldconfig -p | grep -q libpangoft2-1.0 || missing="$$missing libpango-1.0-0 libpangoft2-1.0-0"; \
	command -v shellcheck >/dev/null 2>&1 || missing="$$missing shellcheck"; \
	command -v mosquitto_sub >/dev/null 2>&1 || missing="$$missing mosquitto-clients"; \
	command -v sqlite3 >/dev/null 2>&1 || missing="$$missing sqlite3"; \
	command -v pg_dump >/dev/null 2>&1 || missing="$$missing postgresql-client"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@# Without its recommends: they would pull in the Docker engine, which the tests never run.
	@command -v docker-compose >/dev/null 2>&1 || { \
	  echo "installing Debian packages: docker-compose"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends docker-compose; \
	}
	@pg_isready -q -h 127.0.0.1 -p 5432 || \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true
	@(echo > /dev/tcp/127.0.0.1/1883) 2>/dev/null || /usr/sbin/mosquitto -d -c /etc/mosquitto/mosquitto.conf || true

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: system-deps lint
	$(VENV)/bin/pytest -q
