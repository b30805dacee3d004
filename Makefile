# Thin aliases; the real logic is in .ci/ so CI and developers share it.
.PHONY: run test setup bench

# Build (release) and run Countersign on SQLite in ./data, no configuration needed.
run:
	bash .ci/serve

# Everything CI runs: setup, fmt, clippy, cargo deny, cargo test, release build, browser tests.
test:
	bash .ci/test

# Install the toolchain pieces, npm packages, Chromium; make sure PostgreSQL is up.
setup:
	bash .ci/setup --pg --browser

# The benchmark behind the README's figures (release build; takes about two minutes).
bench:
	bash .ci/bench
