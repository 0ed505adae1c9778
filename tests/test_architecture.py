"""The house rules a newcomer relies on: imports point one way (the README's layer order), no import cycles,
inference without Lightning, a light --help, one error base, an explicit public surface."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "attr2gender"


def readme_layers() -> dict[str, int]:
    """``{top-level module or subpackage: layer}`` from the README's "Layers, lowest first" line."""
    line = next(
        line
        for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith("Layers, lowest first")
    )
    groups = line.split("):", 1)[1].split("→")
    return {name.strip(): i for i, group in enumerate(groups) for name in group.split(",") if name.strip()}


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, module_level_only: bool = False) -> list[str]:
    """Every ``attr2gender...`` module ``name`` imports (``from attr2gender import x`` counts as ``x``)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    if module_level_only:  # imports that run (or that a type checker reads) when the module is imported:
        # the module body and its top-level `if` / `try` blocks, `if TYPE_CHECKING:` included
        nodes = [
            n for top in tree.body for n in (ast.walk(top) if isinstance(top, ast.If | ast.Try) else [top])
        ]
    else:
        nodes = ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "attr2gender" or (target.startswith("attr2gender.") and not node.module):
                found += [f"{target}.{a.name}" for a in node.names]
            elif target.startswith("attr2gender"):
                found.append(target)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("attr2gender")]
    return found


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return layers.get(top)


def test_every_module_has_a_layer_in_the_readme():
    layers = readme_layers()
    tops = {name.split(".")[1] if "." in name else "__init__" for name in modules()}
    assert tops <= set(layers), f"modules missing from the README's layer line: {sorted(tops - set(layers))}"


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_imports_never_point_up_or_sideways():
    """Lazy imports (inside functions) count too, and so does a neighbour in the same layer: two units of one
    layer that import each other have no order, so the README's line would not say which to read first."""
    layers = readme_layers()
    wrong = []
    for name, path in modules().items():
        own = layer_of(name, layers)
        for target in imports(name, path):
            if target in modules() or target.rsplit(".", 1)[0] in modules():
                theirs = layer_of(target, layers)
                if theirs is None or own is None:
                    continue
                if theirs > own:
                    wrong.append(f"{name} -> {target} (up)")
                elif theirs == own and _top(target) != _top(name) and name != "attr2gender":
                    wrong.append(f"{name} -> {target} (same layer)")
    assert not wrong, "imports that do not point down:\n" + "\n".join(wrong)


def test_the_package_never_imports_from_its_own_root():
    """``from attr2gender import X`` inside the package hides which layer X comes from (and the root imports
    lazily); internal code names the module that defines X."""
    found = []
    for name, path in modules().items():
        if name == "attr2gender":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            from_root = (node.level == 0 and node.module == "attr2gender") or (
                node.level
                and not node.module
                and name.count(".") + (path.name == "__init__.py") <= node.level
            )
            names = [
                a.name for a in node.names if f"attr2gender.{a.name}" not in modules()
            ]  # submodules are fine
            if from_root and names:
                found.append(f"{name}:{node.lineno} ({', '.join(names)})")
    assert not found, "imports from the package root: " + ", ".join(found)


MODULE_REASON = "# Lazy imports:"  # a module-level comment line stating one reason for all its lazy imports


def lazy_imports() -> list[tuple[str, int, str, bool]]:
    """(module, line, target, has a reason) for every import of attr2gender inside a function or class."""
    out = []
    for name, path in modules().items():
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text)
        module_reason = any(line.startswith(MODULE_REASON) for line in lines)
        module_level = {id(node) for node in tree.body}
        for node in tree.body:  # `if TYPE_CHECKING:` / `try:` blocks at module level are module level too
            if isinstance(node, ast.If | ast.Try):
                module_level |= {id(n) for n in ast.walk(node)}
        # Lazy import statements by their last line: a run of them with no line between is one block.
        ends = {
            n.end_lineno: n
            for n in ast.walk(tree)
            if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in module_level
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and id(node) not in module_level:
                is_ours = node.level > 0 or (node.module or "").startswith("attr2gender")
                if not is_ours:
                    continue
                first = node
                while (prev := ends.get(first.lineno - 1)) is not None and prev.col_offset == node.col_offset:
                    first = prev
                above = lines[first.lineno - 2].strip() if first.lineno >= 2 else ""
                reason = module_reason or "#" in lines[node.lineno - 1] or above.startswith("#")
                out.append((name, node.lineno, "." * node.level + (node.module or ""), reason))
    return out


def test_every_lazy_import_says_why():
    """A lazy import is the exception (a heavy module kept off ``--help``, or one that would close an import
    cycle), and a comment says which: on the import's line, or on the line above it or above the block of
    import lines it sits in (consecutive lines, no blank line between). A module whose lazy imports all
    have one reason (``cli.py``: every command imports its modules after the arguments are parsed) may
    say it once, in a module-level comment line starting with ``# Lazy imports:``; that is for such a
    module only, not a way around the rule."""
    silent = [f"{m}:{line} ({target})" for m, line, target, reason in lazy_imports() if not reason]
    assert not silent, f"{len(silent)} lazy imports without a reason:\n" + "\n".join(silent)


def test_no_import_cycles_at_module_level():
    mods = modules()
    graph = defaultdict(set)
    for name, path in mods.items():
        for target in imports(name, path, module_level_only=True):
            while target and target not in mods:  # `from pkg import function` -> pkg
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != name:
                graph[name].add(target)
    # A package's __init__ importing its own submodules is how packages work, not a cycle.
    cycles = find_cycles(graph, mods, skip=lambda a, b: a == b.rsplit(".", 1)[0] or b == a.rsplit(".", 1)[0])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def find_cycles(graph, nodes, skip=lambda a, b: False) -> list[list[str]]:
    """Every cycle a depth-first walk of ``graph`` meets, each as the list of its nodes (first = last)."""
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node) :] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if not skip(node, nxt):
                visit(nxt)
        stack.pop()

    for node in sorted(nodes):
        visit(node)
    return cycles


def test_modules_of_one_package_import_each_other_one_way():
    """Inside a package too, imports run one way: two sibling modules never import each other, not even
    lazily or under ``TYPE_CHECKING`` (comparison_metrics and comparison_report once did: the numbers called
    the words and the words typed the numbers)."""
    mods = modules()
    graph = defaultdict(set)
    for name, path in mods.items():
        parent = name.rsplit(".", 1)[0]
        for target in imports(name, path):
            while target and target not in mods:
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != name and target.rsplit(".", 1)[0] == parent and parent != name:
                graph[name].add(target)
    cycles = find_cycles(graph, mods)
    assert not cycles, "sibling modules importing each other: " + "; ".join(" -> ".join(c) for c in cycles)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, cwd=REPO
    )


def test_loading_and_predicting_never_import_lightning(tmp_path):
    proc = _run(f"""
        import sys
        import numpy as np, torch
        from attr2gender import Attr2GenderPipeline, StageTwoClassifier, load_pipeline
        from attr2gender.models import ProbabilityModel, create_backbone
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        meta = {{"task": "attributes", "hparams": {{"backbone": "test_efficientnet", "loss": "", "dropout": 0.0}}}}
        model = ProbabilityModel(create_backbone("test_efficientnet", 39, weights="none"), "multilabel", meta)
        stage_two = StageTwoClassifier().fit(rng.random((30, 39)), rng.integers(0, 2, 30))
        Attr2GenderPipeline(model, stage_two, 32, num_workers=0).save({str(tmp_path / "b")!r}, onnx=False)
        pipe = load_pipeline({str(tmp_path / "b")!r}, num_workers=0)
        # Face detection and alignment included (noise has no face: predicted on the whole image).
        frame = pipe.predict([rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)], fallback="whole_image")
        assert frame["male_probability"].notna().all(), frame["error"][0]
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning")))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "argv", [["--help"], ["train", "--help"], ["predict", "--help"], ["run", "compare", "--help"]]
)
def test_help_is_instant_it_imports_no_torch(argv):
    proc = _run(f"""
        import sys, contextlib, io
        from attr2gender.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                main({argv!r})
            except SystemExit:
                pass
        print(out.getvalue()[-300:])
        print(sorted(m for m in ("torch", "lightning", "mlflow", "sklearn") if m in sys.modules))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_train_help_lists_presets_and_keys(capsys):
    from attr2gender.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out.replace("\n", " ")
    assert (
        "smoke" in text and "no_cosmetics" in text and "stage_two_exclude" in text and "memory_format" in text
    )


def test_every_error_derives_from_the_one_base_and_keeps_its_builtin():
    import attr2gender.errors as errors

    classes = [getattr(errors, name) for name in errors.__all__]
    assert all(issubclass(c, errors.Attr2GenderError) for c in classes)
    assert issubclass(errors.ConfigError, ValueError) and issubclass(
        errors.WeightsNotFoundError, FileNotFoundError
    )
    assert issubclass(errors.RuntimeUnavailableError, RuntimeError)
    defined = {c.__module__ for c in classes}
    assert defined == {"attr2gender.errors"}  # one module of error types


def test_the_public_surface_is_explicit():
    import attr2gender

    for name in (
        "Attr2GenderPipeline",
        "DirectGenderClassifier",
        "load_pipeline",
        "RunConfig",
        "load_preset",
        "StageTwoClassifier",
        "create_backbone",
        "Attr2GenderError",
        "BundleError",
        "ConfigError",
    ):
        assert name in attr2gender.__all__ and getattr(attr2gender, name) is not None
    with pytest.raises(AttributeError):
        attr2gender.plan_run  # noqa: B018  (internals are not on the root)


def test_presets_ship_inside_the_package():
    from attr2gender.config import list_presets, load_preset

    assert {"cpu", "direct", "two_stage", "smoke", "no_cosmetics", "seed_study_1", "seed_study_3"} <= set(
        list_presets()
    )
    assert (PACKAGE / "presets" / "cpu.yaml").is_file() and not (REPO / "configs").exists()
    assert load_preset("cpu")[0][1].backbone == "efficientnet_lite0"


def _uses_of_plots() -> dict[str, set[str]]:
    """``{name: {files}}``: every name the project takes from ``attr2gender.plots``, whether by
    ``from attr2gender.plots import X`` (or ``from ..plots import X``) or as ``plots.X`` / ``P.X`` on the
    module bound by ``from attr2gender import plots [as P]`` (or ``from .. import plots``)."""
    files = [
        p for folder in ("src", "tests", "benchmarks", "pipelines") for p in (REPO / folder).rglob("*.py")
    ]
    uses: dict[str, set[str]] = defaultdict(set)
    for path in files:
        tree = ast.parse(path.read_text())
        inside = path.is_relative_to(PACKAGE)
        if inside:
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            package = list(parts if parts[-1] == "__init__" else parts[:-1])
        bound: set[str] = set()  # local names of the plots module itself
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level and inside:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                if target == "attr2gender.plots":
                    uses[alias.name].add(str(path.relative_to(REPO)))
                elif target == "attr2gender" and alias.name == "plots":
                    bound.add(alias.asname or alias.name)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
            ):
                uses[node.attr].add(str(path.relative_to(REPO)))
    return uses


def test_plots_all_is_exactly_its_public_functions_and_covers_every_use():
    import inspect

    import attr2gender.plots as plots

    exported = set(plots.__all__)
    assert len(exported) == len(plots.__all__), "duplicates in attr2gender.plots.__all__"
    missing = sorted(n for n in exported if not hasattr(plots, n))
    assert not missing, f"attr2gender.plots.__all__ names that do not exist: {missing}"
    assert all(inspect.isfunction(getattr(plots, n)) for n in exported), "__all__ lists only functions"
    defined = {
        name
        for module_name, module in sys.modules.items()
        if module_name.startswith("attr2gender.plots.")
        for name, value in vars(module).items()
        if inspect.isfunction(value) and value.__module__ == module_name and not name.startswith("_")
    }
    assert exported == defined, (
        f"public functions of the plots modules not in __all__: {sorted(defined - exported)}; "
        f"in __all__ but defined elsewhere: {sorted(exported - defined)}"
    )
    uses = _uses_of_plots()
    assert uses, "found no use of attr2gender.plots: the scan is broken"
    absent = {n: sorted(f) for n, f in uses.items() if not hasattr(plots, n)}
    assert not absent, f"names taken from attr2gender.plots that it does not have: {absent}"
    # Functions must be listed; the shared colours (CORRECT_COLOR, ...) are importable constants.
    unlisted = {n: sorted(f) for n, f in uses.items() if callable(getattr(plots, n)) and n not in exported}
    assert not unlisted, f"functions taken from attr2gender.plots but missing from its __all__: {unlisted}"


def test_plots_never_run_a_model():
    """Figures take arrays: no module of the plots package imports torch (forward passes, feature maps and
    the first convolution live in attr2gender.models.internals)."""
    offenders = []
    for path in (PACKAGE / "plots").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("torch", "lightning")]
    assert not offenders, offenders


def test_benchmarks_define_no_function_the_library_evaluation_defines():
    """The benchmarks measure with the library: a benchmark function named like one of the library's
    evaluation functions (attr2gender.metrics, the corruptions, the evaluation layer) is a copy that drifts."""
    library = [
        PACKAGE / "metrics" / "core.py",
        PACKAGE / "metrics" / "groups.py",
        PACKAGE / "data" / "corruptions.py",
        PACKAGE / "pipeline" / "robustness.py",
        PACKAGE / "experiments" / "evaluation.py",
    ]
    defined = {
        node.name: path.relative_to(PACKAGE.parent).as_posix()
        for path in library
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    }
    assert {"accuracy_ci", "paired_accuracy_difference_ci", "markdown_table", "corrupt"} <= set(defined)
    clashes = [
        f"benchmarks/{path.name}:{node.lineno} {node.name} (also in {defined[node.name]})"
        for path in sorted((REPO / "benchmarks").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in defined
    ]
    assert not clashes, "benchmarks redefine library functions; call the library's instead:\n" + "\n".join(
        clashes
    )
