"""Package boundaries: ``edge`` and ``central_sync`` share only ``anqi_contract`` and never import each
other; the contract and the central side stay free of the camera runtime."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("anqi_contract", "anqi_tools", "edge", "central_sync")
#: the device's camera / audio / GPIO runtime: the ``edge`` extra, never needed by central
CAMERA_RUNTIME = {"cv2", "onnxruntime", "av", "gpiozero", "sounddevice", "serial"}
#: which first-party packages each package may import
ALLOWED = {
    "anqi_contract": {"anqi_contract"},
    "anqi_tools": {"anqi_contract", "anqi_tools", "edge"},
    "edge": {"anqi_contract", "edge"},
    "central_sync": {"anqi_contract", "central_sync"},
}
#: the one exception: the edge's CLI package runs the set-up tooling (``anqi-edge models prepare``)
CLI_MAY_IMPORT = {"edge/cli": {"anqi_tools"}}


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, module, at module level) for every absolute import in a file, lazy ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    top = {id(n) for n in tree.body}
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out += [(n.lineno, a.name, id(n) in top) for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out.append((n.lineno, n.module, id(n) in top))
    return out


def violations(root: Path) -> list[str]:
    found = []
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            rel = f.relative_to(root).as_posix()
            extra = next((v for k, v in CLI_MAY_IMPORT.items() if rel.startswith(k + "/")), set())
            for line, mod, _ in imports(f):
                top = mod.split(".")[0]
                if top in PACKAGES and top not in ALLOWED[pkg] | extra:
                    found.append(f"{f.relative_to(root)}:{line}: {pkg} imports {mod}")
    return found


def test_edge_and_central_never_import_each_other() -> None:
    assert violations(ROOT) == []


def test_the_walk_finds_a_lazy_cross_import(tmp_path: Path) -> None:
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
    (tmp_path / "central_sync" / "x.py").write_text("def f():\n    from edge.logs import log\n")
    (tmp_path / "anqi_contract" / "y.py").write_text("import central_sync.config\n")
    (tmp_path / "edge" / "detect").mkdir()
    (tmp_path / "edge" / "detect" / "z.py").write_text("from anqi_tools.prepare import prepare\n")
    (tmp_path / "edge" / "cli").mkdir()
    (tmp_path / "edge" / "cli" / "ok.py").write_text("from anqi_tools.prepare import prepare\n")
    assert violations(tmp_path) == [
        "anqi_contract/y.py:1: anqi_contract imports central_sync.config",
        "edge/detect/z.py:1: edge imports anqi_tools.prepare",
        "central_sync/x.py:2: central_sync imports edge.logs",
    ]


def module_cycles(root: Path, pkg: str) -> list[list[str]]:
    """Import cycles between the modules of one package (lazy imports included)."""
    mods = {}
    for f in (root / pkg).rglob("*.py"):
        parts = f.relative_to(root).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph = {m: {i for _, i, _ in imports(f) if i in mods and i != m} for m, f in mods.items()}
    cycles, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(path[path.index(n) :] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_cycle_between_modules_below_package_fronts() -> None:
    """No two modules import each other (directly or round a loop); a package front importing its own
    modules is not a cycle, so ``__init__`` modules are left out of the loop's inner nodes."""
    found = []
    for pkg in PACKAGES:
        for c in module_cycles(ROOT, pkg):
            inner = [m for m in c if not (ROOT / Path(*m.split("."))).is_dir()]
            if len(set(inner)) > 1:
                found.append(" -> ".join(c))
    assert found == []


def test_contract_and_central_do_not_import_the_camera_runtime_at_module_level() -> None:
    found = []
    for pkg in ("anqi_contract", "central_sync"):
        for f in sorted((ROOT / pkg).rglob("*.py")):
            if f.name == "faces.py" and pkg == "anqi_contract":
                continue  # the shared face embedding space: OpenCV, imported only by who needs faces
            found += [
                f"{f.relative_to(ROOT)}:{line}: {mod}"
                for line, mod, module_level in imports(f)
                if module_level and mod.split(".")[0] in CAMERA_RUNTIME
            ]
    assert found == []


def test_importing_the_central_side_loads_no_edge_module_and_no_camera_runtime() -> None:
    """Every central module imported in a fresh interpreter: not one ``edge.*`` or runtime module loaded."""
    code = (
        "import importlib, pkgutil, sys, central_sync\n"
        "for m in pkgutil.walk_packages(central_sync.__path__, 'central_sync.'):\n"
        "    if '.migrations' not in m.name:\n"
        "        importlib.import_module(m.name)\n"
        f"bad = {sorted(CAMERA_RUNTIME | {'edge'})!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in bad))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def stage_reach_ins(root: Path) -> list[str]:
    """Imports of another stage's inner module (``edge.zone.motion`` from ``edge/rules``) instead of its
    front (``edge.zone``). Config sections (``edge.config.<section>``) are public by design; the wiring
    layer (``edge/build.py``, ``edge/daemon.py``, ``edge/cli/``) may reach in."""
    edge = root / "edge"
    stages = {p.name for p in edge.iterdir() if (p / "__init__.py").is_file()} - {"cli", "config"}
    found = []
    for f in sorted(edge.rglob("*.py")):
        rel = f.relative_to(root)
        own = rel.parts[1] if len(rel.parts) > 2 else None
        if own not in stages:
            continue
        for line, mod, _ in imports(f):
            parts = mod.split(".")
            if parts[0] == "edge" and len(parts) > 2 and parts[1] in stages and parts[1] != own:
                found.append(f"{rel}:{line}: {mod} (use edge.{parts[1]})")
    return found


def test_stages_import_each_other_only_through_package_fronts() -> None:
    assert stage_reach_ins(ROOT) == []


def test_the_front_check_finds_a_reach_in(tmp_path: Path) -> None:
    for d in ("edge/rules", "edge/zone", "edge/cli"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "__init__.py").write_text("")
    (tmp_path / "edge/rules/x.py").write_text(
        "from edge.zone.motion import fit_motion\nfrom edge.zone import g\n"
    )
    (tmp_path / "edge/cli/y.py").write_text("from edge.zone.motion import fit_motion\n")
    assert stage_reach_ins(tmp_path) == ["edge/rules/x.py:1: edge.zone.motion (use edge.zone)"]
