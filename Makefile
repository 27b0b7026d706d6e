# Every target sets up .venv first (pinned packages), so a fresh clone needs only `make serve` or `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
RUFF_PATHS := vault tests snippets  # a command line may narrow it: make check RUFF_PATHS="vault tests"
STAMP  := $(VENV)/.installed
export NO_MKDOCS_2_WARNING := 1

.PHONY: setup serve test check build offline anki new figures spread notebooks bench lighthouse clean

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

# npm packages (package.json + package-lock.json): axe-core for the tests, Lighthouse for the benchmark.
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

serve: setup  ## live-reloading site at http://127.0.0.1:8000/ + the path of site_url (/cv-interview-kb/), rebuilt incrementally
	$(PY) -m vault.serve -a 127.0.0.1:8000

check: setup  ## lint, fast contribution checks, then the strict build
	$(VENV)/bin/ruff check $(RUFF_PATHS)
	$(PY) -m vault.check

test: setup $(NODE_STAMP)  ## the whole suite: lint, workflow audit, checks, strict build, snippets, notebooks, browser tests (axe-core from npm)
	$(VENV)/bin/ruff check $(RUFF_PATHS)
	$(VENV)/bin/zizmor --offline .github/workflows
	$(PY) -m vault.check --no-build  # a few seconds: prints how many numbers are bound, on how many pages
	$(PY) -m pytest -n 2  # includes `make check` on the real vault (tests/test_check.py), in parallel with the rest

build: setup  ## the static site in site/
	$(PY) -m mkdocs build --strict -d site

offline: setup  ## a copy that works from disk (file://), search included, zipped as site-offline.zip
	rm -rf site-offline site-offline.zip
	OFFLINE=true $(PY) -m mkdocs build --strict -d site-offline
	$(PY) -m zipfile -c site-offline.zip site-offline/

anki: setup  ## the Anki deck and CSV of every question in dist/ (the site build ships them too)
	$(PY) -m vault.anki dist

bench: setup  ## build scaling, search index size and page weight (prints figures, asserts nothing)
	$(PY) -m vault.bench

lighthouse: setup $(NODE_STAMP)  ## Lighthouse (mobile) on sampled pages beside stock Material; BEFORE=<rev> adds that revision
	$(PY) -m vault.lighthouse $(if $(BEFORE),--before $(BEFORE)) $(if $(RUNS),--runs $(RUNS))

new: setup  ## scaffold a question: make new SECTION=classical-cv NAME="Hough transform" QUESTION="..."
	$(PY) -m vault.new --section "$(SECTION)" --name "$(NAME)" --question "$(QUESTION)"

figures: setup  ## re-run every snippet, rewriting the committed figures
	$(PY) -m vault.snippets

spread: setup  ## which bound numbers and figures move when the arithmetic runs another way (figures, not a test)
	$(PY) -m vault.spread $(FILES)

notebooks: setup  ## execute the notebooks in place, so they are committed with outputs
	$(PY) -m vault.notebooks

clean:
	rm -rf site site-offline site-offline.zip dist .pytest_cache .cache node_modules
