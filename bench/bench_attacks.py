"""Benchmark: lslib.attacks against foolbox 3.3.x and torchattacks 3.5.1.

Same model (a LeNet trained on MNIST, cached in the temp folder), same inputs (the first ``--n``
MNIST test images), same settings, timed interleaved in one run: each round times lslib,
foolbox and torchattacks one after the other for every attack, and the script reports the
median over rounds and the ratios.

torchattacks pins an old ``requests``, so it never enters the project's environment: it lives in
a throw-away venv, ``bench/.venv-torchattacks`` (git-ignored, created on first use with the same
torch release), and runs in a subprocess that loads the same weights and inputs and times only
the attack calls (process start-up is not counted); it reports its timings back as JSON.

The model's parameters require grad, as they do after training (what a user passes in);
foolbox's attacks and torchattacks' DeepFool and CW call ``loss.backward()``, which then also
computes (and accumulates into ``.grad``) the parameter gradients, while lslib never computes
them. ``--frozen`` freezes the parameters for every library (``requires_grad_(False)``), which
removes that cost from the others: run both to see where the time goes.

Every timing includes deciding which returned points are adversarial: lslib and foolbox do it
inside the call, and for torchattacks (which returns only the points) the timed region ends with
one forward pass on its output.

    python bench/bench_attacks.py --data-root ../shared/data --device cpu --n 1000
    python bench/bench_attacks.py --threads 1 --clock cpu --attacks fgsm bim   # a shared machine

Every library takes the batch as it is given. The "bare forward+backward" floor of BIM is the
same passes with nothing else, in one batch.

By default every process runs with glibc's own malloc settings, as a user's Python does; the
table prints each call's minor page faults. ``--keep-freed-memory`` makes every timed process
(this one, which times lslib, foolbox and the floors, and the torchattacks worker) call
``lslib.allocator.keep_freed_memory()`` first, so that no library pays for glibc handing freed
buffers back to the kernel: a comparison of the code alone.

Ratios are medians over the rounds of the per-round ratios (paired: the machine's slow drifts
cancel). Besides the bare floor, BIM is compared with "BIM, minimal": the same k passes plus
what any BIM that reports its success must add (the signed step and its projection after each
pass, and one forward of the last iterate), written inline; lslib's BIM over that is what its
own bookkeeping costs.

Targets (from the attacks issue): DeepFool >= 20x faster than torchattacks and >= 1.5x faster
than foolbox at equal or smaller median L2; CW-L2 >= 1.5x faster than foolbox at equal steps at
equal or smaller median L2; FGSM and BIM at least as fast as torchattacks; BIM with k steps
within 1.1x of k bare forward+backward passes of the model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
TA_VENV = REPO / "bench" / ".venv-torchattacks"
TA_VERSION = "3.5.1"

# attack settings shared by the three libraries
FGSM_EPS = 0.1
BIM_EPS, BIM_STEPS = 0.1, 10
BIM_STEP = 2.5 * BIM_EPS / BIM_STEPS
DF_STEPS, DF_OVERSHOOT, DF_CANDIDATES = 50, 0.02, 10
CW_CONST = 1e-3
ATTACKS = ("fgsm", "bim", "deepfool", "cw")


def _median_l2(adv: torch.Tensor, x: torch.Tensor, success: torch.Tensor,
               clean: torch.Tensor) -> float:
    """Median L2 over clean-correct points, +inf where the attack failed."""
    norms = (adv - x).flatten(1).norm(dim=1).double()
    norms = torch.where(success, norms, torch.full_like(norms, float("inf")))
    return float(norms[clean].median())


def _verdict(model, adv, y):
    with torch.no_grad():
        return model(adv).argmax(1) != y


# ------------------------------------------------------------------------------------------
# the torchattacks worker (runs inside bench/.venv-torchattacks; needs only torch + torchattacks)
# ------------------------------------------------------------------------------------------


def worker(spec_path: str) -> None:
    """Loads the spec, then times one torchattacks call per attack name read from stdin and
    answers each with a JSON line (so the parent can interleave it with the other libraries)."""
    sys.path.insert(0, str(REPO))
    import torchattacks

    from lslib.models import build_model  # plain torch code, no other dependency

    spec = torch.load(spec_path, weights_only=False)
    if spec["keep_freed_memory"]:
        from lslib.allocator import keep_freed_memory  # plain ctypes, no other dependency

        keep_freed_memory()
    torch.set_num_threads(spec["threads"])
    set_clock(spec["clock"])
    model = build_model("lenet-mnist")  # as the project builds it (its CPU speed path)
    model.load_state_dict(spec["state_dict"])
    model.eval().requires_grad_(not spec["frozen"])
    device = torch.device(spec["device"])
    model.to(device)
    x, y = spec["x"].to(device), spec["y"].to(device)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    attacks = {
        "fgsm": lambda: torchattacks.FGSM(model, eps=FGSM_EPS),
        "bim": lambda: torchattacks.BIM(model, eps=BIM_EPS, alpha=BIM_STEP, steps=BIM_STEPS),
        "deepfool": lambda: torchattacks.DeepFool(model, steps=DF_STEPS, overshoot=DF_OVERSHOOT),
        "cw(c=1)": lambda: torchattacks.CW(model, c=1.0, kappa=0.0, steps=spec["cw_steps"],
                                           lr=spec["cw_lr"]),
    }
    print("READY", flush=True)
    for line in sys.stdin:
        name = line.strip()
        if not name:
            break
        atk = attacks[name]()

        def attack_and_verdict(atk=atk):
            adv = atk(x, y)  # torchattacks returns only the points: judging them is part of
            return adv, _verdict(model, adv, y)  # the job (lslib and foolbox do it inside)

        seconds, (adv, success) = timed(attack_and_verdict, device)
        print("JSON " + json.dumps({"seconds": seconds, "faults": _last_faults,
                                    "success": float(success[clean].double().mean()),
                                    "median_l2": _median_l2(adv, x, success, clean)}),
              flush=True)


class TorchattacksWorker:
    """The worker subprocess in the torchattacks venv."""

    def __init__(self, python: str, spec_file: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([python, __file__, "--worker", str(spec_file)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)
        if self._line() != "READY":
            raise RuntimeError("the torchattacks worker did not start")

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the torchattacks worker died")
        return line.strip()

    def run(self, name: str) -> dict:
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        while True:
            line = self._line()
            if line.startswith("JSON "):
                return json.loads(line[5:])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


# ------------------------------------------------------------------------------------------
# set-up
# ------------------------------------------------------------------------------------------


def ensure_torchattacks_venv(python: str | None) -> str | None:
    """The interpreter of the throw-away torchattacks venv (created when missing)."""
    if python:
        return python
    exe = TA_VENV / "bin" / "python"
    if exe.exists():
        return str(exe)
    torch_spec = f"torch=={torch.__version__.split('+')[0]}"
    specs = [torch_spec]
    try:
        import torchvision

        specs.append(f"torchvision=={torchvision.__version__.split('+')[0]}")
    except ImportError:
        pass
    print(f"creating {TA_VENV} ({' '.join(specs)} torchattacks=={TA_VERSION}) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(TA_VENV)], check=True)
        subprocess.run([str(exe), "-m", "pip", "install", "--quiet", *specs,
                        f"torchattacks=={TA_VERSION}"], check=True)
    except subprocess.CalledProcessError as err:
        print(f"could not set up torchattacks ({err}); its timings are skipped")
        return None
    return str(exe)


def trained_lenet(root: Path, device: torch.device, epochs: int = 2):
    """LeNetMNIST trained on MNIST train (Adam, batch 128, seed 0), cached in the temp folder."""
    from lslib.data import load_dataset
    from lslib.models import build_model

    cache = Path(tempfile.gettempdir()) / "lslib-bench" / f"lenet-mnist-e{epochs}-s0.pt"
    model = build_model("lenet-mnist")  # as the project builds it (its CPU speed path)
    if cache.exists():
        model.load_state_dict(torch.load(cache, map_location="cpu"))
        return model.to(device)
    print(f"training LeNetMNIST for {epochs} epochs (cached in {cache}) ...", flush=True)
    train = load_dataset("mnist", "train", root)
    torch.manual_seed(0)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(train.y), generator=g)
        for i in range(0, len(perm), 128):
            idx = perm[i : i + 128]
            xb, yb = train.x[idx].to(device), train.y[idx].to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def set_clock(name: str) -> None:
    global _clock
    _clock = CLOCKS[name]


_last_faults = 0  # minor page faults of the last timed() call


def _minor_faults() -> int:
    try:
        import resource
    except ImportError:  # not a Unix
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(fn, device):
    global _last_faults
    if device.type == "cuda":
        torch.cuda.synchronize()
    faults = _minor_faults()
    start = _clock()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = _clock() - start
    _last_faults = _minor_faults() - faults
    return seconds, out


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=None,
                   help="folder holding MNIST/raw (default: $LSLIB_DATA, else ../shared/data)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--n", type=int, default=1000, help="MNIST test images attacked")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--cw-steps", type=int, default=100)
    p.add_argument("--cw-bss", type=int, default=5, help="CW binary-search steps")
    p.add_argument("--cw-lr", type=float, default=0.1,
                   help="CW Adam step (0.1: 5 x 100 steps then fool all of MNIST)")
    p.add_argument("--frozen", action="store_true",
                   help="freeze the model's parameters (requires_grad_(False)) for all libraries;"
                        " by default they require grad, as after training")
    p.add_argument("--ta-deepfool-rounds", type=int, default=1,
                   help="rounds that time torchattacks' (per-sample, slow) DeepFool")
    p.add_argument("--no-torchattacks", action="store_true")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall: elapsed time; cpu: the process's CPU time (CPU only), which other "
                        "jobs on a shared machine disturb far less (use it with --threads 1)")
    p.add_argument("--attacks", nargs="+", choices=ATTACKS, default=list(ATTACKS),
                   help="which attacks to time (default: all four)")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="every timed process keeps freed memory "
                        "(lslib.allocator.keep_freed_memory); default: glibc's own settings")
    p.add_argument("--torchattacks-python", default=None,
                   help="an interpreter with torchattacks (default: bench/.venv-torchattacks)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0

    import foolbox as fb

    from lslib import attacks as A
    from lslib.data import load_dataset

    if args.keep_freed_memory:
        from lslib.allocator import keep_freed_memory

        malloc = "freed memory kept" if keep_freed_memory() else "default (no glibc mallopt)"
    else:
        malloc = "the C library's defaults"
    root = args.data_root or os.environ.get("LSLIB_DATA")
    if root is None and (REPO.parent / "shared" / "data").is_dir():
        root = str(REPO.parent / "shared" / "data")
    if root is None or not (Path(root) / "MNIST" / "raw").is_dir():
        print(f"SKIPPED: MNIST not found under {root!r}; pass --data-root or set LSLIB_DATA")
        return 0
    root = Path(root)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("SKIPPED: --device cuda but no CUDA device is present")
        return 0
    if args.clock == "cpu" and device.type != "cpu":
        p.error("--clock cpu measures CPU time: it needs --device cpu")
    set_clock(args.clock)

    model = trained_lenet(root, device)
    model.eval().requires_grad_(not args.frozen)
    test = load_dataset("mnist", "test", root, limit=args.n)
    x, y = test.x.to(device), test.y.to(device)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    print(f"LeNetMNIST on the first {len(y)} MNIST test images, clean accuracy "
          f"{float(clean.double().mean()):.4f}; device {device}, {threads} thread(s), "
          f"torch {torch.__version__}, foolbox {fb.__version__}; parameters "
          f"{'frozen' if args.frozen else 'requiring grad (as trained)'}; malloc: {malloc}")
    try:
        load = os.getloadavg()
        print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
              f"on {os.cpu_count()} CPUs")
    except OSError:
        pass

    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=device)
    cw_steps, cw_bss, cw_lr = args.cw_steps, args.cw_bss, args.cw_lr

    def floor_passes(size):  # k bare forward+backward passes with respect to the input
        def run():
            for i in range(0, len(y), size):
                xs, ys = x[i : i + size], y[i : i + size]
                for _ in range(BIM_STEPS):
                    xg = xs.detach().requires_grad_(True)
                    loss = F.cross_entropy(model(xg), ys, reduction="sum")
                    torch.autograd.grad(loss, xg)
        return run

    floors = {"floor": floor_passes(len(y))}

    def minimal_bim():  # the floor's passes + signed step, projection, one forward at the end
        lo, hi = (x - BIM_EPS).clamp(min=0), (x + BIM_EPS).clamp(max=1)
        adv = x
        for _ in range(BIM_STEPS):
            xg = adv.detach().requires_grad_(True)
            loss = F.cross_entropy(model(xg), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, xg)
            adv = torch.add(adv, grad.sign(), alpha=BIM_STEP).clamp_(lo, hi)
        with torch.no_grad():
            model(adv).argmax(1)

    lslib_runs = {
        "fgsm": lambda: A.fgsm(model, x, y, FGSM_EPS).adversarial,
        "bim": lambda: A.bim(model, x, y, BIM_EPS, step_size=BIM_STEP,
                             steps=BIM_STEPS).adversarial,
        "deepfool": lambda: A.deepfool(model, x, y, steps=DF_STEPS, overshoot=DF_OVERSHOOT,
                                       candidates=DF_CANDIDATES).adversarial,
        "cw": lambda: A.carlini_wagner_l2(model, x, y, binary_search_steps=cw_bss,
                                          steps=cw_steps, lr=cw_lr,
                                          initial_const=CW_CONST).adversarial,
    }
    fb_attacks = {
        "fgsm": (fb.attacks.LinfFastGradientAttack(random_start=False), FGSM_EPS),
        "bim": (fb.attacks.LinfBasicIterativeAttack(abs_stepsize=BIM_STEP, steps=BIM_STEPS,
                                                    random_start=False), BIM_EPS),
        "deepfool": (fb.attacks.L2DeepFoolAttack(steps=DF_STEPS, candidates=DF_CANDIDATES,
                                                 overshoot=DF_OVERSHOOT), None),
        "cw": (fb.attacks.L2CarliniWagnerAttack(binary_search_steps=cw_bss, steps=cw_steps,
                                                stepsize=cw_lr, confidence=0.0,
                                                initial_const=CW_CONST, abort_early=True), None),
    }

    def fb_run(name):
        attack, eps = fb_attacks[name]
        _, adv, success = attack(fmodel, x, y, epsilons=eps)
        if name == "cw":  # foolbox's CW failures are all-zero images: keep x there
            failed = ~(success & (adv != 0).flatten(1).any(1))
            adv = torch.where(failed.view(-1, 1, 1, 1), x, adv)
        return adv

    ta_python = None if args.no_torchattacks else ensure_torchattacks_venv(
        args.torchattacks_python)
    ta = None
    if ta_python:
        spec_file = Path(tempfile.mkdtemp(prefix="lslib-bench-")) / "spec.pt"
        torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                    "x": x.cpu(), "y": y.cpu(), "device": args.device, "threads": threads,
                    "frozen": args.frozen, "clock": args.clock, "cw_steps": cw_steps,
                    "keep_freed_memory": args.keep_freed_memory,
                    "cw_lr": cw_lr}, spec_file)
        try:
            ta = TorchattacksWorker(ta_python, spec_file)
        except (RuntimeError, OSError) as err:
            print(f"torchattacks worker unavailable ({err}); its timings are skipped")

    times: dict[tuple[str, str], list[float]] = {}
    quality: dict[tuple[str, str], tuple[float, float]] = {}

    faults: dict[tuple[str, str], list[int]] = {}

    def record(lib, name, seconds, adv):
        times.setdefault((lib, name), []).append(seconds)
        faults.setdefault((lib, name), []).append(_last_faults)
        if adv is not None:
            success = _verdict(model, adv, y)
            quality[(lib, name)] = (float(success[clean].double().mean()),
                                    _median_l2(adv, x, success, clean))

    def run_ta(name):
        res = ta.run(name)
        times.setdefault(("torchattacks", name), []).append(res["seconds"])
        faults.setdefault(("torchattacks", name), []).append(res["faults"])
        quality[("torchattacks", name)] = (res["success"], res["median_l2"])

    try:
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds} ...", flush=True)
            for name in args.attacks:
                # the libraries one after the other, in an order that rotates with the round
                jobs = [("lslib", lambda name=name: record("lslib", name,
                                                           *timed(lslib_runs[name], device))),
                        ("foolbox", lambda name=name: record(
                            "foolbox", name, *timed(lambda: fb_run(name), device)))]
                if name == "bim":
                    for key, fn in [*floors.items(), ("minimal", minimal_bim)]:
                        jobs.append((key, lambda key=key, fn=fn: record(
                            key, "bim", timed(fn, device)[0], None)))
                if ta is not None:
                    ta_name = "cw(c=1)" if name == "cw" else name
                    if name != "deepfool" or r < args.ta_deepfool_rounds:
                        jobs.append(("torchattacks", lambda n=ta_name: run_ta(n)))
                shift = r % len(jobs)
                for _, job in jobs[shift:] + jobs[:shift]:
                    job()
    finally:
        if ta is not None:
            ta.close()

    med = {k: statistics.median(v) for k, v in times.items()}
    print()
    print(f"{'attack':<10}{'library':<14}{'median s':>10}{'success':>10}{'median L2':>12}"
          f"{'faults':>9}   (success among clean-correct; L2 median with inf for failures; "
          f"median minor page faults per call)")

    def nfaults(key):
        return statistics.median(faults[key]) if faults.get(key) else float("nan")

    for name in ("fgsm", "bim", "deepfool", "cw", "cw(c=1)"):
        for lib in ("lslib", "foolbox", "torchattacks"):
            if (lib, name) in med:
                s, l2 = quality.get((lib, name), (float("nan"), float("nan")))
                print(f"{name:<10}{lib:<14}{med[(lib, name)]:>10.3f}{s:>10.4f}{l2:>12.4f}"
                      f"{nfaults((lib, name)):>9.0f}")
    for key in floors:
        if (key, "bim") in med:
            label = "one batch"
            print(f"{'bim floor':<10}{f'{BIM_STEPS} fwd+bwd':<14}{med[(key, 'bim')]:>10.3f}"
                  f"{'':>22}{nfaults((key, 'bim')):>9.0f}   ({label})")
    if ("minimal", "bim") in med:
        print(f"{'bim':<10}{'minimal':<14}{med[('minimal', 'bim')]:>10.3f}{'':>22}"
              f"{nfaults(('minimal', 'bim')):>9.0f}   (floor + step + last forward, one batch)")
    print()
    checks = []

    def ratio(a, b):
        """Median over the rounds of time(b) / time(a) (rounds where both ran)."""
        pairs = list(zip(times[a], times[b], strict=False))
        return statistics.median(tb / ta for ta, tb in pairs)

    def check(label, ok, detail):
        checks.append(ok)
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {detail}")

    def l2(lib, name):
        return quality[(lib, name)][1]

    tol = 1 + 1e-6  # "equal" median norms: equal up to float rounding
    if ("torchattacks", "deepfool") in med:
        r_ = ratio(("lslib", "deepfool"), ("torchattacks", "deepfool"))
        check("DeepFool >= 20x faster than torchattacks, L2 <=",
              r_ >= 20 and l2("lslib", "deepfool") <= tol * l2("torchattacks", "deepfool"),
              f"{r_:.1f}x, median L2 {l2('lslib', 'deepfool'):.4f} vs "
              f"{l2('torchattacks', 'deepfool'):.4f}")
    if "deepfool" in args.attacks:
        r_ = ratio(("lslib", "deepfool"), ("foolbox", "deepfool"))
        check("DeepFool >= 1.5x faster than foolbox, L2 <=",
              r_ >= 1.5 and l2("lslib", "deepfool") <= tol * l2("foolbox", "deepfool"),
              f"{r_:.2f}x, median L2 {l2('lslib', 'deepfool'):.4f} vs "
              f"{l2('foolbox', 'deepfool'):.4f}")
    if "cw" in args.attacks:
        r_ = ratio(("lslib", "cw"), ("foolbox", "cw"))
        check(f"CW-L2 >= 1.5x faster than foolbox ({cw_bss}x{cw_steps} steps), L2 <=",
              r_ >= 1.5 and l2("lslib", "cw") <= tol * l2("foolbox", "cw"),
              f"{r_:.2f}x, median L2 {l2('lslib', 'cw'):.4f} vs {l2('foolbox', 'cw'):.4f}")
    for name in ("fgsm", "bim"):
        if name not in args.attacks:
            continue
        if ("torchattacks", name) in med:
            r_ = ratio(("lslib", name), ("torchattacks", name))
            check(f"{name.upper()} at least as fast as torchattacks", r_ >= 1.0, f"{r_:.2f}x")
        r_ = ratio(("lslib", name), ("foolbox", name))
        print(f"info  {name.upper()} vs foolbox: {r_:.2f}x")
    if "bim" in args.attacks:
        r_ = 1 / ratio(("lslib", "bim"), ("floor", "bim"))
        check(f"BIM ({BIM_STEPS} steps) within 1.1x of {BIM_STEPS} bare forward+backward passes",
              r_ <= 1.1, f"{r_:.3f}x (one batch)")
        r_min = 1 / ratio(("minimal", "bim"), ("floor", "bim"))
        r_own = ratio(("minimal", "bim"), ("lslib", "bim"))
        print(f"info  a minimal BIM (the floor + step + last forward) is {r_min:.3f}x the floor;"
              f" lslib's BIM is {r_own:.3f}x the minimal one")
    if ("torchattacks", "cw(c=1)") in med:
        print(f"info  torchattacks CW (c=1, no search, {cw_steps} steps) "
              f"{med[('torchattacks', 'cw(c=1)')]:.3f} s: a different algorithm, not compared")
    print(f"\n{sum(checks)}/{len(checks)} targets met ({args.clock} clock) "
          f"(CW: {cw_bss} x {cw_steps} steps, Adam step {cw_lr}, c0 {CW_CONST})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
