"""The fault-injection harness, shared by the tests (tests/) and the benchmarks (bench/).

Toy corpora and real-corpus slices in the official archive layouts (`corpora`, `archives`),
a loopback HTTP server that misbehaves on request (`loopback`), structured MIDI mutators
(`mutate`) and the child process that runs prepare's per-file path on them (`fuzz_worker`),
pool workers that die on given items (`crashing`), and kill-and-rerun trials of the real
commands (`faults`). It runs from a source checkout (`pip install -e .`), and no stage
command imports it (tests/test_dvc_deps.py would see it among a stage's modules).
"""
