"""Mutation testing with mutmut: the project's one command (docs/internals.md, "Mutation testing").

    python tools/mutation.py run [--all] [GROUP ...]   # stage, mutate, test (all groups by default)
    python tools/mutation.py run MUTANT_NAME_OR_GLOB ...   # (re)test just those mutants
    python tools/mutation.py score [GROUP ...]   # killed / total per group, and the survivors by name
    python tools/mutation.py results|show NAME|browse|...   # any other mutmut command, in the stage

GROUPs: solvers, planning_agent, stats, spaces, checkpoint, model (its planning layer: `_adjusted_mdp`,
`_plan`, `_tried_pairs_unknown_mass`, `_missing_mass`, `_exploring_unknown_mass`, `_limited_bonuses`,
`_with_tried_unknown`, `_successor_spread`, the spread terms' `*_and_mean`, and the unknown successor's worth:
`_unknown_worth_per_step`, `_rewarded_pairs`, `_reward_seen`, `_goal_rewards_only`, `_typical_move_cost`,
`_largest_goal_seen`; the stay floor: `_stay_floor` and the graphs' `self_loop_counts`), envs,
baselines, missing_mass (the missing-mass stage's targets, loss and training examples).
Not in CI: a full run takes tens of minutes on two cores.

Why a stage: mutmut copies the sources into `mutants/`, puts that first on sys.path and names a mutant
by its file path. `envs/` and `baselines/` sit at the top of the checkout and install as
`icrl_agent.envs` / `icrl_agent.baselines` (setup.cfg `package_dir`), so run in place their mutants
would be named `envs.*`, and the tests would import the unmutated files through the editable install.
The stage (`build/mutation/`, git-ignored) holds the installed layout, `icrl_agent/{envs,baselines}`,
so every mutant is imported under its real module name. The mutmut settings are `[tool.mutmut]` in
pyproject.toml. Results are kept in the stage between runs: `run` tests the mutants not yet checked
(new, or of a function that changed: mutmut resets those) and re-tests the survivors (tests may have
been added); a kill stands until its function changes. `run --all` re-tests every mutant of the groups.

Focused groups: every test of the suite that calls a function runs against each of its mutants, and env
constructors and baselines are called by nearly every test (the bench, the agent, the examples' checks), so
with the whole suite these groups run at ~1-2 mutants/min on two cores. `--focused` runs a group against its
own test files only (FOCUSED_TESTS), in its own stage (`build/mutation-focused-<group>`, so the whole-suite
stage keeps its results): a kill there is a kill by the group's own tests, so the focused score is a lower
bound of the whole suite's.

    python tools/mutation.py run --focused envs      # or baselines, checkpoint, planning_agent, model
    python tools/mutation.py score --focused envs
    python tools/mutation.py show --focused envs MUTANT_NAME

Environment: MUTATION_MAX_CHILDREN (default 2) parallel mutant workers; MUTATION_DIR the stage.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = Path(os.environ.get("MUTATION_DIR", ROOT / "build" / "mutation"))

# group -> mutant-name globs (mutmut names a mutant `module.x_function__mutmut_N` or
# `module.xǁClassǁmethod__mutmut_N`)
GROUPS: dict[str, list[str]] = {
    "solvers": ["icrl_agent.solvers.*"],
    "planning_agent": ["icrl_agent.planning_agent.*"],
    "stats": ["icrl_agent.stats.*"],
    "spaces": ["icrl_agent.spaces.*"],
    "checkpoint": ["icrl_agent.checkpoint.*"],
    "model": [f"icrl_agent.model.xǁIcrlModelǁ{name}__mutmut_*"
              for name in ("_adjusted_mdp", "_plan", "_tried_pairs_unknown_mass", "_missing_mass",
                           "_exploring_unknown_mass", "_limited_bonuses", "_unknown_worth_per_step", "_stay_floor",
                           "_run")]
    + [f"icrl_agent.model.x_{name}__mutmut_*"
       for name in ("_with_tried_unknown", "_successor_spread", "_rewarded_pairs", "_reward_seen", "_goal_rewards_only",
                    "_typical_move_cost", "_largest_goal_seen", "_limited_bonus_induction")]
    + [f"icrl_agent.model.xǁ_SpreadTermsǁ{name}__mutmut_*" for name in ("both_and_mean", "variance_and_mean")]
    + [f"icrl_agent.model.xǁ{graph}ǁself_loop_counts__mutmut_*" for graph in ("_DenseGraph", "_SparseGraph")],
    "envs": ["icrl_agent.envs.*"],
    "baselines": ["icrl_agent.baselines.*"],
    "missing_mass": [f"icrl_agent.pretraining.missing_mass.x_{name}__mutmut_*"
                     for name in ("true_missing_mass", "true_unknown_state_mass", "tried_pairs", "head_loss",
                                  "step_batches", "step_loss")],
}

# group -> its own test files (`--focused`)
FOCUSED_TESTS: dict[str, list[str]] = {
    "envs": ["tests/test_envs.py", "tests/test_envs_contract.py", "tests/test_env_models.py",
             "tests/test_minigrid.py", "tests/test_minigrid_contract.py"],
    "baselines": ["tests/test_baselines.py", "tests/test_baselines_behaviour.py", "tests/test_baselines_contract.py",
                  "tests/test_rejected_inputs.py", "tests/test_bench.py", "tests/test_sb3_baseline_contract.py"],
    "checkpoint": ["tests/test_checkpoint.py", "tests/test_checkpoint_contract.py"],
    "planning_agent": ["tests/test_planning_agent_rule.py", "tests/test_agent.py", "tests/test_horizon.py"],
    "model": ["tests/test_model_planning.py", "tests/test_model.py", "tests/test_reference_outputs.py"],
    "missing_mass": ["tests/test_missing_mass_stage.py"],
}

# (tree in the checkout, where it goes in the stage)
LAYOUT = [
    ("icrl_agent", "icrl_agent"),
    ("envs", "icrl_agent/envs"),
    ("baselines", "icrl_agent/baselines"),
    ("tests", "tests"),
    ("configs", "configs"),
]


def _sync_tree(src: Path, dst: Path, keep: set[str]) -> None:
    """Make `dst` a copy of `src` (mtimes kept: mutmut re-mutates a file only when it is newer)."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if entry.name == "__pycache__":
            continue
        target = dst / entry.name
        if entry.is_dir():
            _sync_tree(entry, target, set())
        else:
            st = entry.stat()
            if not target.exists() or target.stat().st_mtime != st.st_mtime or target.stat().st_size != st.st_size:
                shutil.copy2(entry, target)
    wanted = {e.name for e in src.iterdir()} | keep | {"__pycache__"}
    for entry in dst.iterdir():
        if entry.name not in wanted:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _focus(groups: list[str]) -> None:
    """Point STAGE at the focused stage of ``groups`` and remember its test files (see the docstring)."""
    global STAGE, _FOCUSED_FILES
    missing = [g for g in groups if g not in FOCUSED_TESTS]
    if len(groups) != 1 or missing:
        raise SystemExit(f"--focused takes one group of {sorted(FOCUSED_TESTS)}, got {groups}")
    STAGE = ROOT / "build" / f"mutation-focused-{groups[0]}"
    _FOCUSED_FILES = FOCUSED_TESTS[groups[0]]


_FOCUSED_FILES: list[str] = []


def _select_focused_tests(pyproject: Path) -> None:
    """Replace the stage's mutmut test selection by the focused group's test files."""
    text = pyproject.read_text()
    files = ", ".join(f'"{f}"' for f in _FOCUSED_FILES)
    text, n = re.subn(r"pytest_add_cli_args_test_selection = \[.*?\]", f"pytest_add_cli_args_test_selection = [{files}]",
                      text, flags=re.S)
    if n != 1:
        raise SystemExit("pyproject.toml: no [tool.mutmut] pytest_add_cli_args_test_selection to focus")
    pyproject.write_text(text)


def stage() -> None:
    for src, dst in LAYOUT:
        nested = {d.split("/", 1)[1] for s, d in LAYOUT if d.startswith(dst + "/")}
        _sync_tree(ROOT / src, STAGE / dst, keep=nested)
    for name in ("pyproject.toml", "setup.cfg"):
        shutil.copy2(ROOT / name, STAGE / name)
    if _FOCUSED_FILES:
        _select_focused_tests(STAGE / "pyproject.toml")
    # tests read these from the tests' parent (mutants/ in a run): the README's code, .gitignore, and
    # benchmarks/results (committed results)
    for where in (STAGE, STAGE / "mutants"):
        where.mkdir(parents=True, exist_ok=True)
        for name in ("README.md", ".gitignore"):
            shutil.copy2(ROOT / name, where / name)
        _sync_tree(ROOT / "benchmarks", where / "benchmarks", set())
    # mutmut copies tests/ into mutants/ but never removes a test deleted since: mirror it
    _sync_tree(ROOT / "tests", STAGE / "mutants" / "tests", set())


def mutmut(*args: str, quiet: bool = False) -> int:
    env = dict(os.environ)
    # one BLAS/torch thread per worker: the workers are the parallelism
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    cmd = [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.exit(cli())", *args]
    out = subprocess.DEVNULL if quiet else None
    return subprocess.call(cmd, cwd=STAGE, env=env, stdout=out, stderr=out)


def _globs(groups: list[str]) -> list[str]:
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise SystemExit(f"unknown group(s) {unknown}; choose from {sorted(GROUPS)}")
    return [glob for g in groups or list(GROUPS) for glob in GROUPS[g]]


STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"}


def _exit_codes() -> dict[str, int | None]:
    exit_codes: dict[str, int | None] = {}
    for meta in (STAGE / "mutants").rglob("*.py.meta"):
        exit_codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return exit_codes


def _changed_modules() -> list[str]:
    """Mutated modules edited since mutmut last generated their mutants."""
    changed = []
    for meta in (STAGE / "mutants").rglob("*.py.meta"):
        mutated = meta.with_suffix("")  # mutmut rewrites it only when it generates the file's mutants
        src = STAGE / mutated.relative_to(STAGE / "mutants")
        if src.exists() and mutated.exists() and src.stat().st_mtime > mutated.stat().st_mtime:
            module = str(src.relative_to(STAGE).with_suffix("")).replace(os.sep, ".").removesuffix(".__init__")
            changed.append(module)
    return changed


def _to_test(groups: list[str], everything: bool) -> list[str]:
    """What to (re)test: the groups' globs on a first or `--all` run; else the unchecked and not-killed
    mutants by name (mutmut re-tests every mutant a glob or name matches, killed or not)."""
    globs = _globs(groups)
    exit_codes = _exit_codes()
    if everything or not exit_codes:
        return globs
    caught = {"killed", "timeout"}
    return sorted(
        k
        for k, code in exit_codes.items()
        if any(fnmatch(k, g) for g in globs) and STATUS.get(code, "suspicious") not in caught
    )


def score(groups: list[str]) -> int:
    _globs(groups)
    exit_codes = _exit_codes()
    print(f"{'group':<16}{'killed':>8}{'timeout':>9}{'survived':>10}{'no tests':>10}{'unchecked':>11}{'score':>8}")
    for group in groups or list(GROUPS):
        keys = sorted(k for k in exit_codes if any(fnmatch(k, g) for g in GROUPS[group]))
        counts: dict[str, int] = {}
        for k in keys:
            status = STATUS.get(exit_codes[k], "suspicious")
            counts[status] = counts.get(status, 0) + 1
        caught = counts.get("killed", 0) + counts.get("timeout", 0)
        tested = len(keys) - counts.get("not checked", 0) - counts.get("skipped", 0)
        pct = f"{100 * caught / tested:.1f}%" if tested else "-"
        print(f"{group:<16}{counts.get('killed', 0):>8}{counts.get('timeout', 0):>9}{counts.get('survived', 0):>10}"
              f"{counts.get('no tests', 0):>10}{counts.get('not checked', 0):>11}{pct:>8}")
        for k in keys:
            status = STATUS.get(exit_codes[k], "suspicious")
            if status not in ("killed", "timeout", "not checked"):
                print(f"    {status}: {k}")
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    focused_group: list[str] = []
    if "--focused" in rest:
        rest = [a for a in rest if a != "--focused"]
        focused_group = [a for a in rest if a != "--all" and "." not in a]  # names may follow the group
        _focus(focused_group)
    if command == "score":
        return score(rest)
    stage()
    if command == "run":
        everything = "--all" in rest
        names = [a for a in rest if "." in a]  # mutant names or globs, e.g. icrl_agent.solvers.x_to_go_index*
        groups = [g for g in rest if g != "--all" and g not in names]
        _globs(groups)
        children = os.environ.get("MUTATION_MAX_CHILDREN", "2")
        if names:
            return mutmut("run", "--max-children", children, *names)
        if not (STAGE / "mutants").exists():
            everything = True
        if not everything and _changed_modules():
            # let mutmut regenerate the edited modules' mutants first (a changed function's results are
            # reset, the others kept): a run filtered on a name that matches nothing does just that
            mutmut("run", "icrl_agent.__regenerate_only__", quiet=True)
        names = _to_test(groups, everything)
        if not names:
            print("nothing to test: every mutant of these groups is killed")
            return score(groups)
        status = mutmut("run", "--max-children", children, *names)
        score(groups)
        return status
    return mutmut(command, *[a for a in rest if a not in focused_group])  # e.g. show --focused envs NAME


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
