"""A fixed-seed, small-budget run of the mutation fuzzer (issue 16): damaged or hostile input must never crash,
hang, print a traceback, exhaust memory, make the two engines disagree or break a result's invariants.

Every kind needs the compiled core (marked ``core``): ``arrays`` compares it with the reference model, and the
``readers`` and ``npz`` children replay with it whatever CACHESIM_PUREPYTHON says (proc.child_env). The budgets
keep the three under a minute on two cores; bench/fuzz/README.md gives the long run and how to read a finding.
"""

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "fuzz"))

import run as fuzz  # noqa: E402

# about 40 s on two cores: arrays cases share worker processes, an npz case runs six commands
BUDGETS = {"readers": 50, "arrays": 300, "npz": 5}


@pytest.mark.core
@pytest.mark.fuzz
@pytest.mark.parametrize("kind", list(BUDGETS))
def test_fuzz_small(kind, tmp_path):
    report = fuzz.main(["--seed", "0", "--budget", str(BUDGETS[kind]), "--kind", kind, "--work", str(tmp_path),
                        "--jobs", "2", "--quiet"])
    runs = sum(report["counts"][kind].values())
    assert runs >= BUDGETS[kind]                       # every case ran (a readers case may run several commands)
    bad = Counter(f["class"] for f in report["findings"])
    examples = [f"{f['class']}: {f.get('argv', '')} {f['detail'][:160]} ({f.get('input')})"
                for f in report["findings"]][:8]
    assert not bad, f"{dict(bad)} in {kind}; e.g.\n" + "\n".join(examples)
