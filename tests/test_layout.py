"""The library's layout: no import circle between `mlnb` modules (imports inside functions count), each module opens
with a docstring saying what it owns, and each comes from the one notebook named after it.

The checks read the source with `ast` (nothing is imported), and each is also run on a small made-up package, so a
check that could never fail would be noticed."""
import ast, re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
import pytest
from conftest import ROOT

PKG = 'mlnb'

def imported_modules(tree: ast.AST, mods: set) -> set:
    "The package modules among `mods` that `tree` imports anywhere (top level, in a function, under an `if`)."
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out |= {a.name.split('.')[1] for a in n.names if a.name.startswith(PKG + '.')}
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ''
            if n.level == 0 and not (base == PKG or base.startswith(PKG + '.')): continue  # another package
            parts = base.split('.')[1:] if n.level == 0 else [p for p in base.split('.') if p]
            out |= {parts[0]} if parts else {a.name for a in n.names}  # `from . import x` / `from mlnb import x`: x is the module
    return out & mods

def import_graph(folder: Path) -> dict:
    "`{module: modules it imports}` for every `*.py` of the package in `folder`."
    files = {p.stem: p for p in sorted(Path(folder).glob('*.py'))}
    return {m: imported_modules(ast.parse(p.read_text(), str(p)), set(files)) for m, p in files.items()}

def import_cycle(graph: dict) -> list | None:
    "One circle of imports in `graph` (`[a, b, a]`), or None."
    try: TopologicalSorter(graph).prepare()
    except CycleError as e: return list(reversed(e.args[1]))
    return None

def undocumented(folder: Path) -> list:
    "The modules in `folder` that do not open with a docstring (nbdev's own `__init__` and `_modidx` aside)."
    return sorted(p.name for p in Path(folder).glob('*.py') if not p.stem.startswith('_') and not (ast.get_docstring(ast.parse(p.read_text())) or '').strip())

def write(folder: Path, files: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, src in files.items(): (folder/name).write_text(src)
    return folder

def test_no_import_cycle_in_mlnb():
    g = import_graph(ROOT/PKG)
    assert {'core', 'cache', 'cli', 'pipeline', 'engine'} <= set(g) and g['pipeline'], g   # the graph was read
    assert (cycle := import_cycle(g)) is None, f"mlnb modules import each other in a circle: {' -> '.join(cycle)}"

def test_the_cycle_check_sees_every_kind_of_import(tmp_path):
    "A circle closed by an import inside a function, or through `from . import x` / `import mlnb.x`, is found; none where there is none."
    pkg = write(tmp_path/'a'/PKG, {
        'core.py': '"Errors."\nimport os, json\nfrom pathlib import Path\n',
        'keys.py': '"Keys."\nfrom .core import x\nimport mlnbx.other\n',
        'cache.py': '"The index."\nfrom mlnb.keys import y\ndef f():\n    from . import runs\n',
        'runs.py': '"Runs."\nif True:\n    import mlnb.core\n',
    })
    g = import_graph(pkg)
    assert g == {'core': set(), 'keys': {'core'}, 'cache': {'keys', 'runs'}, 'runs': {'core'}}, g
    assert import_cycle(g) is None
    (pkg/'core.py').write_text('"Errors."\ndef late():\n    from mlnb.cache import Cache  # lazily: still a circle\n')
    cycle = import_cycle(import_graph(pkg))
    assert cycle and cycle[0] == cycle[-1] and {'core', 'cache'} <= set(cycle), cycle
    (pkg/'core.py').write_text('"Errors."\n')
    (pkg/'runs.py').write_text('"Runs."\nfrom . import cache\n')
    cycle = import_cycle(import_graph(pkg))
    assert cycle in (['cache', 'runs', 'cache'], ['runs', 'cache', 'runs']), cycle

def test_every_module_says_what_it_owns(tmp_path):
    assert undocumented(ROOT/PKG) == []
    pkg = write(tmp_path/PKG, {'a.py': '"Owns a."\n', 'b.py': '# a comment is not a docstring\nx = 1\n', 'c.py': '"""  """\n', '_modidx.py': 'd = {}\n'})
    assert undocumented(pkg) == ['b.py', 'c.py']

def test_each_module_comes_from_the_notebook_named_after_it():
    "One notebook per module and one module per notebook: `nbs/NN_name.ipynb` exports `mlnb/name.py`."
    for p in (ROOT/PKG).glob('*.py'):
        if p.stem.startswith('_'): continue
        m = re.search(r'File to edit: \.\./nbs/(\w+)\.ipynb', p.read_text())
        assert m and m.group(1).split('_', 1)[1] == p.stem, (p.name, m and m.group(1))
