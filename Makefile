# The README's two commands are `make demo` and `make test`; both set up first.
PY := .venv/bin/python
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup demo firmware-demo test test-python test-firmware test-latest benchmarks notebooks

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/tfadvq demo

# the demo's model in the real firmware on QEMU Cortex-M4: builds TFLM outside the project first unless
# TFLM_DIR names one (tflm_firmware/scripts/build_tflm.sh; TFLM_FROM=/abs/clones when offline), reuses every
# finished demo stage, then runs a scripted enroll/verify session beside Python's scores
firmware-demo: setup
	$(if $(TFLM_DIR),,$(MAKE) -C tflm_firmware tflm TFLM_BUILD_ARGS="--cores m4")
	.venv/bin/tfadvq demo --firmware

test: setup test-python test-firmware

test-python:
	$(PY) -m pytest -q tests

test-firmware:
	$(MAKE) -C tflm_firmware test

# the fast subset on the newest TensorFlow/tf-keras/tfmot/tflite-micro in a venv beside the
# repository (not CI's pinned .venv): `make test-latest PYTHONS="3.11 3.12 3.13"`
PYTHONS ?= 3.12
test-latest:
	bash scripts/test-latest.sh $(PYTHONS)

# every notebook on its default (tiny) settings, executed with outputs into build/notebooks/ for reading
notebooks: setup
	nice -n 10 $(PY) notebooks/execute.py --out build/notebooks notebooks/*.ipynb

benchmarks: setup
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done
