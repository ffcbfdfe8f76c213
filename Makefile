# Two entry points: `make demo` (install + run the main job on the embedded data) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PRESETS := s m l
DEMO := runs/demo

.PHONY: install lint test test-quick demo camvid clean

install: $(STAMP)

# torch is pinned to the build on this machine's disk, so no second torch is ever pulled in
$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/python -m pytest -q tests

# the quick subset: everything but the tests marked slow
test-quick: lint
	$(BIN)/python -m pytest -q -m "not slow" tests

demo: install
	mkdir -p $(DEMO)
	$(BIN)/hyctas profile --arch $(foreach p,$(PRESETS),hyctas_$(p)) --size 1024 2048 \
		| tee $(DEMO)/profile.txt
	for p in $(PRESETS); do \
		$(BIN)/hyctas show --arch hyctas_$$p --out $(DEMO)/hyctas_$$p.png | tee $(DEMO)/hyctas_$$p.txt; \
	done
	$(BIN)/hyctas fit --config configs/demo/supernet.yaml
	$(BIN)/hyctas search --ckpt $(DEMO)/supernet/checkpoints/last.ckpt --config configs/demo/search.yaml
	$(BIN)/hyctas fit --config configs/demo/retrain.yaml --model.init_args.arch $(DEMO)/search/best.json
	$(BIN)/hyctas test --config configs/demo/retrain.yaml --model.init_args.arch $(DEMO)/search/best.json \
		--ckpt_path $(DEMO)/retrain/checkpoints/last.ckpt
	@echo "demo outputs in $(DEMO)/: supernet/, search/ (pareto.png, best.json), retrain/ (checkpoints, predictions)"

# The whole method on CamVid (configs/camvid/pipeline.yaml): supernet, search, rank study, retraining against
# baselines, evaluation, latency, model zoo, report. Every stage resumes: rerun to continue.
camvid: install
	$(BIN)/hyctas pipeline --config configs/camvid/pipeline.yaml --data "{root: $(or $(CAMVID),../shared/datasets/camvid)}"

clean:
	rm -rf $(VENV) runs lightning_logs src/*.egg-info
