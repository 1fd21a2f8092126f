"""Mutation testing, one module at a time against its own tests (``make mutate``).

    python tools/mutate.py                         # every module in MODULES, one after the other
    python tools/mutate.py training/checkpoint     # one module (make mutate MODULE=training/checkpoint)
    python tools/mutate.py --list                  # the modules and the tests each is run against
    python tools/mutate.py --diff data/samplers    # with each survivor's change (make mutate DIFF=1)

mutmut (settings in pyproject.toml, ``[tool.mutmut]``) copies the project into ``mutants/``, mutates
the one module there and runs, for each mutant, the module's tests (``not slow and not slurm``) that
reach the mutated function. Each module starts from a fresh ``mutants/``; the last one's is left for
``mutmut show NAME`` and ``mutmut browse``. Prints the score (killed / total) and the survivors.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PREPARE_TESTS = [f"tests/apps/test_prepare{part}.py" for part in ("", "_markers", "_labels")]
# Module (relative to fishnet_train/) -> the tests that are its own.
MODULES: dict[str, list[str]] = {
    "training/checkpoint": ["tests/training/test_checkpoint.py"],
    "training/loop": ["tests/training/test_loop.py", "tests/training/test_loop_reports.py",
                      "tests/training/test_loop_steps.py"],
    "training/trainer": ["tests/training/test_trainer.py", "tests/training/test_trainer_resume.py"],
    "data/samplers": ["tests/data/test_samplers.py"],
    "data/index": ["tests/data/test_index.py", "tests/data/test_shards.py", "tests/data/test_datasets.py"],
    "data/indexing": ["tests/data/test_indexing.py", "tests/data/test_indexing_in_process.py"],
    "data/decoding/images": ["tests/data/test_images.py", "tests/data/test_jpeg_region.py"],
    "data/transforms": ["tests/data/test_transforms.py", "tests/data/test_augment.py"],
    "apps/evaluator": ["tests/apps/test_evaluator.py"],
    "apps/predictor": ["tests/apps/test_predictor.py"],
    "apps/exporter": ["tests/apps/test_exporter.py", "tests/apps/test_exporter_steps.py"],
    # hubconf.py itself cannot be mutated usefully: torch.hub imports it as a module named "hubconf.py",
    # which mutmut's switch does not recognise. Its three entries call models/hub.py, checked here.
    "models/hub": ["tests/models/test_hub.py"],
    "tracking/sender": ["tests/tracking/test_sender.py"],
    "tracking/record": ["tests/tracking/test_record.py"],
    "tracking/checks": ["tests/tracking/test_checks.py"],
    "apps/eval_sets": ["tests/apps/test_eval_sets.py", "tests/apps/test_eval_labels.py"],  # the latter: shards
    "models/baselines": ["tests/models/test_baselines.py"],
    "apps/compare": ["tests/apps/test_compare.py"],
    # fishnet-prepare, module by module, against its tests (the restart-marker ones included)
    **{f"apps/prepare/{name}": PREPARE_TESTS
       for name in ("__init__", "writers", "plan", "sources", "labels", "archives")},
    "apps/averager": ["tests/apps/test_averager.py"],
    "apps/eval_labels": ["tests/apps/test_eval_labels.py", "tests/apps/test_eval_label_files.py"],
    # The launchers' naming and the config check before the job (the console-script tests run in processes
    # of their own, which mutmut's switch does not reach: the in-process ones decide)
    "cli/common": ["tests/cli/test_common.py", "tests/cli/test_run_dirs.py"],
}

# mutmut's verdicts by the exit code it records for a mutant (mutmut.stats.status_by_exit_code).
KILLED = {1, 3, 37, -24, 24, 152, 255, 36}  # failed tests, a pytest error, a type error or a timeout
SURVIVED = {0}
NO_TESTS = {5, 33}


def source_of(module: str) -> str:
    """``training/checkpoint`` -> ``fishnet_train/training/checkpoint.py``."""
    return f"fishnet_train/{module}.py"


def run_one(module: str, max_children: int, mutants: list[str]) -> None:
    """In this process: mutmut on ``module`` alone, its tests alone (mutmut reads its settings once);
    ``mutants``: only these (names or globs), the others left unchecked."""
    import mutmut.configuration as configuration

    settings = configuration._load_config()
    configuration._config = dataclasses.replace(
        settings, only_mutate=[source_of(module)], pytest_add_cli_args_test_selection=MODULES[module])
    from mutmut.__main__ import _run

    _run(tuple(mutants), max_children)


def score(module: str) -> tuple[int, int, list[str], list[str]]:
    """(killed, total, survivors, mutants no test reaches) from mutmut's record of ``module``."""
    meta = ROOT / "mutants" / (source_of(module) + ".meta")
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    codes = {name: code for name, code in codes.items() if code is not None}  # None: not checked (--mutants)
    killed = sum(code in KILLED for code in codes.values())
    survivors = sorted(name for name, code in codes.items() if code in SURVIVED)
    untested = sorted(name for name, code in codes.items() if code in NO_TESTS)
    return killed, len(codes), survivors, untested


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="modules as in --list (default: all)")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--diff", action="store_true", help="show each survivor's change")
    parser.add_argument("--list", action="store_true", help="list the modules and their tests")
    parser.add_argument("--mutants", nargs="+", default=[], metavar="NAME",
                        help="check only these mutants of the one module (names or globs), e.g. its last survivors")
    parser.add_argument("--json", type=Path, help="also write the scores to this file")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.list:
        for module, tests in MODULES.items():
            print(f"{module:22} {source_of(module):40} {' '.join(tests)}")
        return 0
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; --list shows them")
    if args.mutants and len(args.modules) != 1:
        parser.error("--mutants needs exactly one module")
    if args.in_process:
        run_one(args.modules[0], args.max_children, args.mutants)
        return 0
    os.chdir(ROOT)
    # One intra-op thread per mutant being tested: max-children processes use max-children cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    results = {}
    for module in args.modules or list(MODULES):
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        print(f"=== {module}: {source_of(module)} against {' '.join(MODULES[module])}", flush=True)
        start = time.monotonic()
        cmd = [sys.executable, __file__, module, "--in-process", "--max-children", str(args.max_children)]
        cmd += ["--mutants", *args.mutants] if args.mutants else []
        rc = subprocess.run(cmd, env=env).returncode
        minutes = (time.monotonic() - start) / 60
        if rc != 0:
            print(f"=== {module}: mutmut failed (exit {rc}) after {minutes:.1f} min", flush=True)
            results[module] = {"error": rc, "minutes": round(minutes, 1)}
            continue
        killed, total, survivors, untested = score(module)
        print(f"=== {module}: {killed}/{total} killed ({100 * killed / max(total, 1):.0f} %), "
              f"{len(survivors)} survived, {len(untested)} reached by no test, {minutes:.1f} min")
        for name in survivors:
            print(f"    survived: {name}")
            if args.diff:
                from mutmut.mutation.diff_apply import get_diff_for_mutant

                diff = get_diff_for_mutant(name, path=source_of(module)).splitlines()[2:]
                print("\n".join("        " + line for line in diff if line))
        for function, count in sorted(Counter(name.rpartition("__mutmut_")[0] for name in untested).items()):
            print(f"    no test reaches {function} ({count} mutants)")
        results[module] = {"killed": killed, "total": total, "survived": survivors, "no_tests": untested,
                           "minutes": round(minutes, 1)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print("\nmodule                  killed/total  minutes")
    for module, r in results.items():
        line = f"{r['killed']}/{r['total']}" if "killed" in r else f"failed ({r['error']})"
        print(f"{module:22}  {line:>12}  {r['minutes']:7.1f}")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
