# make run  : install, migrate, seed the demo hospitals, start the web server and a worker
# make test : the whole suite (SQLite, then MariaDB when it is reachable)
# make bench: the benchmarks (MariaDB on 127.0.0.1:3306 and Redis on 6379; README "Performance")
# make reliability: the long reliability tiers and one report (README "Security and reliability")
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000
MARIADB_TEST_URL ?= mysql://root@127.0.0.1:3306/hospital

.PHONY: run test install install-mysql migrate seed worker web clean bench reliability

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python requirements/base.txt requirements/ml.txt requirements/local.txt
	$(PY) -m pip install --quiet -r requirements/local.txt
	touch $@

install: $(VENV)/.installed

$(VENV)/.installed-mysql: $(VENV)/.installed requirements/mysql.txt
	$(PY) -m pip install --quiet -r requirements/mysql.txt
	touch $@

install-mysql: $(VENV)/.installed-mysql

migrate: install
	$(PY) manage.py migrate --noinput

seed: migrate
	$(PY) manage.py seed_demo

run: seed
	@echo "Portal: http://$(HOST):$(PORT)/   (stop with Ctrl-C)"
	@trap 'kill 0' INT TERM EXIT; \
	$(VENV)/bin/celery -A config worker --beat --schedule var/celerybeat-schedule --loglevel=INFO \
		--concurrency=1 -Q inference,default & \
	$(PY) manage.py runserver $(HOST):$(PORT)

MARIADB_UP = $(PY) -c "import socket; socket.create_connection(('127.0.0.1', 3306), 0.5)" 2>/dev/null

test: install
	@if $(MARIADB_UP); then $(MAKE) --no-print-directory install-mysql; fi
	$(PY) -m pytest -q
	@if $(MARIADB_UP); then \
		echo "== again on MariaDB ($(MARIADB_TEST_URL))" && \
		DATABASE_URL=$(MARIADB_TEST_URL) $(PY) -m pytest -q --create-db; \
	else echo "MariaDB not reachable on 127.0.0.1:3306: SQLite run only"; fi

# Inference alone, then the pipeline through gunicorn + Celery (BENCH_DURATION seconds of
# uploads, saturated, then paced at 10 uploads/s), then the API at scale (the seeded
# database is kept between runs; MariaDB's InnoDB buffer pool set to hold it for that run), then
# the CPU of one upload, part by part.
BENCH_DURATION ?= 30
BENCH_INNODB_POOL_MIB ?= 2048
bench: install-mysql
	$(PY) bench/ml_inference.py
	$(PY) bench/pipeline.py --duration $(BENCH_DURATION)
	$(PY) bench/pipeline.py --duration $(BENCH_DURATION) --rate 10
	$(PY) bench/api_scale.py --reuse --innodb-buffer-pool-mib $(BENCH_INNODB_POOL_MIB)
	$(PY) bench/upload_cost.py

# Every reliability and security figure in var/reliability/report.json, and one summary line:
# the tests that report figures at full count (RELIABILITY_FULL=1), fuzzing, load, pip-audit.
# RELIABILITY_ARGS=--quick runs the cheap counts with short fuzzing and load.
RELIABILITY_ARGS ?=
reliability: install-mysql
	$(PY) -m reliability.run $(RELIABILITY_ARGS)

clean:
	rm -rf var
