"""The GPU check: the suite's gpu tests and the GPU figures, in one run of a few minutes.

    python tools/gpu_check.py OUT          # on a machine with a CUDA GPU (make gpu-check OUT=DIR)
    python tools/gpu_check.py OUT --cpu    # the same end to end on the CPU at tiny sizes (a test runs it)

Writes OUT/gpu_check.md (a table) and OUT/gpu_check.json (every figure, with the device, driver and
versions), and OUT/gpu_tests.xml (the tests' JUnit report). Steps:
1. the tests marked ``gpu`` (pytest -m gpu): prefetcher, AMP bf16/fp16 and the scaler across a resume,
   channels_last with compile, GPU evaluation against the CPU's, deterministic runs, a killed run
   resumed, a real out-of-memory error;
2. FishNet-150 training and inference img/s at batch 64 and 128: the trainer's GPU defaults (bf16
   autocast, channels_last; BN folded for inference; and compiled at batch 128) against the plain fp32
   NCHW eager model, alternating rounds, with each step's peak memory;
3. the training loader's img/s with 14 workers on synthetic JPEGs of ImageNet's sizes, against the step;
4. steps/s with and without the trainer's per-step agreement (its one host sync).
It installs nothing; see docs/development.md for the device command line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))

import torch  # noqa: E402
from bench_gpu import bench_compiled_step, bench_host_sync, bench_loader, bench_steps, write_jpegs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    model: str
    batches: tuple[int, ...]
    size: int
    steps: int
    rounds: int
    compile_batch: int | None
    jpegs: int
    workers: int
    loader_batch: int
    loader_passes: int
    sync_batch: int
    sync_steps: int


GPU_SIZES = Sizes("fishnet150", (64, 128), 224, 10, 3, 128, 4096, 14, 64, 2, 32, 30)
CPU_SIZES = Sizes("fishnet99", (2,), 64, 1, 1, None, 24, 2, 2, 2, 2, 2)
COMPILE_SECONDS = 200  # what compiling and timing the FishNet-150 step may take: skipped with less left


def environment(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "cpu_cores": os.cpu_count(), "device": "cpu", "driver": None, "gpu_memory_gb": None,
            # Loader workers hand batches over in shared memory: a small /dev/shm ends them with "Bus error".
            "dev_shm_gb": round(shutil.disk_usage("/dev/shm").total / 2**30, 1) if os.path.isdir("/dev/shm") else None}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {"device": props.name, "capability": f"{props.major}.{props.minor}",
                 "gpu_memory_gb": round(props.total_memory / 2**30, 1), "driver": _driver()}
    return info


def _driver() -> str | None:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def gpu_tests(out: Path, timeout: int, cuda: bool) -> dict:
    """The suite's tests marked gpu, in a pytest of their own; counts from its JUnit report. ``ok``: it
    ran to the end with no failure and, on a GPU, ran every test (none skipped)."""
    report = out.resolve() / "gpu_tests.xml"
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                             "--durations=0", f"--junitxml={report}", "tests"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:  # its training processes and loader workers go too
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        timed_out = True
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if report.exists():
        suite = ElementTree.parse(report).getroot()
        suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
        counts = {key: int(suite.get(key, 0)) for key in counts}  # type: ignore[union-attr]
    ok = (not timed_out and proc.returncode == 0 and report.exists() and counts["failures"] + counts["errors"] == 0
          and (not cuda or (counts["tests"] > 0 and counts["skipped"] == 0)))
    print(stdout[-4000:], stderr[-2000:], sep="\n", flush=True)
    return counts | {"ok": ok, "returncode": proc.returncode, "timed_out": timed_out,
                     "seconds": round(time.perf_counter() - started, 1),
                     "output_tail": stdout[-4000:], "stderr_tail": stderr[-2000:]}


def run_check(out: Path, cpu: bool, tests: bool, tests_timeout: int, budget: float) -> dict:
    """Every phase in turn; the JSON is rewritten after each, so a run stopped at its limit keeps
    what it measured. The compiled step comes last, only if ``budget`` leaves time for it."""
    deadline = time.monotonic() + budget
    device = torch.device("cpu" if cpu else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: run with --cpu for the CPU smoke run")
    sizes, amp = CPU_SIZES if cpu else GPU_SIZES, "bf16"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer sets it when not deterministic
    results: dict = {"environment": environment(device), "sizes": asdict(sizes)}

    def done(section: str, value: object) -> None:
        results[section] = value
        print(f"\n{section}: {json.dumps(value) if section != 'gpu_tests' else ''}", flush=True)
        (out / "gpu_check.json").write_text(json.dumps(results, indent=2))

    done("environment", results["environment"])
    done("gpu_tests", gpu_tests(out, tests_timeout, device.type == "cuda") if tests else None)
    done("steps", bench_steps(sizes.model, sizes.batches, sizes.size, sizes.steps, sizes.rounds, amp, device))
    with tempfile.TemporaryDirectory() as tmp:
        jpeg_kb = write_jpegs(Path(tmp), sizes.jpegs, min(sizes.workers, os.cpu_count() or 1))
        rate = bench_loader(Path(tmp), sizes.workers, sizes.loader_batch, sizes.loader_passes, device.type == "cuda")
    done("loader", {"workers": sizes.workers, "batch": sizes.loader_batch, "jpeg_kb": jpeg_kb,
                    "images_per_sec": round(rate, 1)})
    done("host_sync", bench_host_sync(sizes.model, sizes.sync_batch, sizes.size, sizes.sync_steps, sizes.rounds,
                                      amp, device))
    if sizes.compile_batch is None:
        done("compiled", {"skipped": "not on the CPU smoke run"})
    elif deadline - time.monotonic() < COMPILE_SECONDS:
        done("compiled", {"skipped": f"less than {COMPILE_SECONDS} s of the {budget:.0f} s budget left"})
    else:
        done("compiled", bench_compiled_step(sizes.model, sizes.compile_batch, sizes.size, sizes.steps,
                                             sizes.rounds, amp, device))
    return results


def markdown(results: dict) -> str:
    env, sizes = results["environment"], results["sizes"]
    lines = [f"# GPU check: {env['device']}", "",
             f"driver {env['driver']}, torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, "
             f"{env['cpu_cores']} CPU cores; {sizes['model']} at {sizes['size']} px", ""]
    tests = results["gpu_tests"]
    if tests is not None:
        passed = tests["tests"] - tests["failures"] - tests["errors"] - tests["skipped"]
        state = "" if tests["ok"] else ", NOT OK" + (" (timed out)" if tests["timed_out"] else "")
        lines += [f"gpu tests: {passed} passed, {tests['failures'] + tests['errors']} failed, "
                  f"{tests['skipped']} skipped ({tests['seconds']} s){state}", ""]
    lines += ["| batch | step | plain fp32 NCHW img/s | ours img/s | ratio | plain peak MB | ours peak MB |",
              "|---|---|---|---|---|---|---|"]
    for batch, row in results["steps"].items():
        for kind in ("train", "infer"):
            lines.append(_ratio_row(batch, kind, row[f"{kind}_plain"], row[f"{kind}_ours"]))
    compiled = results["compiled"]
    if "skipped" not in compiled:
        batch = str(compiled["batch"])
        lines.append(_ratio_row(batch, "train, compiled", results["steps"][batch]["train_plain"], compiled))
    last = str(sizes["batches"][-1])
    rates = [results["steps"][last]["train_ours"]["images_per_sec"]]
    rates += [compiled["images_per_sec"]] if compiled.get("batch") == sizes["batches"][-1] else []
    loader, sync = results["loader"], results["host_sync"]
    lines.append("")
    if "skipped" in compiled:
        lines.append(f"compiled step: skipped, {compiled['skipped']}")
    lines += [f"loader, {loader['workers']} workers, batch {loader['batch']}, JPEGs of {loader['jpeg_kb']} KB on "
              f"average: {loader['images_per_sec']} img/s, {loader['images_per_sec'] / max(rates):.2f}x the fastest "
              f"training step at batch {last} ({max(rates)} img/s)",
              f"host sync: {sync['with_agreement']} steps/s with the per-step agreement, {sync['without']} without "
              f"(batch {sync['batch']})", ""]
    return "\n".join(lines)


def _ratio_row(batch: str, kind: str, plain: dict, ours: dict) -> str:
    ratio = ours["images_per_sec"] / plain["images_per_sec"]
    return (f"| {batch} | {kind} | {plain['images_per_sec']} | {ours['images_per_sec']} | {ratio:.2f}x | "
            f"{plain['step_peak_mb']} | {ours['step_peak_mb']} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for gpu_check.md, gpu_check.json and gpu_tests.xml")
    parser.add_argument("--cpu", action="store_true", help="the CPU smoke run at tiny sizes")
    parser.add_argument("--no-tests", action="store_true", help="skip the gpu tests")
    parser.add_argument("--tests-timeout", type=int, default=240, help="seconds for the gpu tests")
    parser.add_argument("--budget", type=float, default=480,
                        help=f"seconds for the whole check: the compiled step needs {COMPILE_SECONDS} s of them left")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_check(args.out, args.cpu, not args.no_tests, args.tests_timeout, args.budget)
    (args.out / "gpu_check.md").write_text(markdown(results))
    print("\n" + markdown(results))
    return 0 if results["gpu_tests"] is None or results["gpu_tests"]["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
