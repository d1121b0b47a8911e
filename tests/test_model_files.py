"Model files (issue 18): every model mlnb builds loads; a file is trusted on its type names alone, before any import; nothing raised while loading ends the process; parameters that reach the file system are refused; a run's artifacts are checked against its manifest."
import io, json, subprocess, sys, textwrap, warnings, zipfile
import numpy as np, pandas as pd, pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
import mlnb.core as core
from mlnb.core import (MlnbError, Upstream, allowed_type, load_artifact, load_model, model_bytes, model_types, refused_types,
                       risky_params, save_artifact, write_text)
from mlnb.features import Tfidf, build_preprocessor
from mlnb.pipeline import split_scraps
from mlnb.registry import Registry
from mlnb.train import MODELS, compose
from conftest import ROOT

# ---------------------------------------------------------------- tiny data with every column role

N = 60
WORDS = 'good bad fine awful day night sun rain cold warm'.split()

def frame(seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({'num': rng.normal(size=N), 'num2': np.where(rng.random(N) < .1, np.nan, rng.normal(size=N)),
                         'cat': rng.choice(['a', 'b', 'c', '?'], N), 'wide': [f'w{i % 30}' for i in range(N)],
                         'text': [' '.join(rng.choice(WORDS, 6)) for _ in range(N)],
                         'date': pd.date_range('2020-01-01', periods=N, freq='D').astype(str)})

X = frame()
ROLES = {'num': 'numeric', 'num2': 'numeric', 'cat': 'categorical', 'wide': 'categorical', 'text': 'text', 'date': 'datetime'}
rng = np.random.default_rng(1)
Y = {'binary': pd.Series(rng.choice(['no', 'yes'], N)), 'multiclass': pd.Series(rng.choice(['x', 'y', 'z'], N)), 'regression': pd.Series(rng.normal(size=N))}
SMALL = {'random_forest': dict(n_estimators=3), 'hgb': dict(max_iter=3), 'linear_svm': dict(max_iter=500)}
KINDS = [(task, m) for task in Y for m in MODELS if ('regression' if task == 'regression' else 'classification') in MODELS[m]]

def built(task, model, feature_params=None, model_params=None):
    "The features stage's preprocessing and train's Pipeline for `model` on `task`, fitted on the tiny frame."
    params = {'text_svd': 2 if model == 'hgb' else 0, **(feature_params or {})}
    prep = build_preprocessor(ROLES, model, task, X.nunique().to_dict(), params)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return prep, compose(prep, model, {**SMALL.get(model, {}), **(model_params or {})}, 0, task=task).fit(X, Y[task])

def round_trip(pipe):
    "`pipe` written as a run writes it (`model_bytes`) and loaded back through the allowlist; the same outputs."
    data = model_bytes(pipe)
    assert refused_types(model_types(data)) == []
    back = load_model(data)
    out = (lambda p: p.predict_proba(X)) if hasattr(pipe, 'predict_proba') else (lambda p: p.predict(X))
    np.testing.assert_allclose(out(back), out(pipe))
    assert model_types(model_bytes(back)) == model_types(data)
    return back

@pytest.mark.parametrize('task,model', KINDS)
def test_every_model_kind_loads(task, model):
    prep, pipe = built(task, model)
    round_trip(pipe)
    assert refused_types(model_types(model_bytes(prep))) == []   # the features stage's artifact: the unfitted preprocessing
    load_model(model_bytes(prep))

@pytest.mark.parametrize('feature_params', [
    dict(missing_indicator=True, min_frequency=0.1, max_onehot=5, text_char_ngrams=(2, 3), text_svd=2),   # indicators, rare levels, target encoding, char n-grams, SVD
    dict(select='variance'), dict(select='kbest', select_k=3), dict(select='model', select_k=3),
    dict(reduce='pca', reduce_components=2), dict(reduce='svd', reduce_components=2)], ids=lambda p: '-'.join(map(str, p.values())))
@pytest.mark.parametrize('task', list(Y))
def test_feature_options_load(task, feature_params):
    round_trip(built(task, 'linear', feature_params)[1])

@pytest.mark.parametrize('task,model,params', [
    ('regression', 'hgb', dict(loss='absolute_error')), ('regression', 'hgb', dict(loss='poisson')), ('regression', 'hgb', dict(loss='quantile', quantile=0.8)),
    ('regression', 'hgb', dict(loss='gamma')), ('binary', 'hgb', dict(early_stopping=True, validation_fraction=0.3, n_iter_no_change=1)),
    ('binary', 'random_forest', dict(oob_score=True, class_weight='balanced')), ('multiclass', 'linear', dict(class_weight='balanced'))])
def test_model_settings_a_parameter_file_can_give_load(task, model, params):
    y = Y[task].abs() + 0.1 if params.get('loss') in ('poisson', 'gamma') else Y[task]
    prep = build_preprocessor(ROLES, model, task, X.nunique().to_dict(), {'text_svd': 2 if model == 'hgb' else 0})
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); pipe = compose(prep, model, {**SMALL.get(model, {}), **params}, 0, task=task).fit(X, y)
    round_trip(pipe)

def test_calibrated_svm_with_isotonic_calibration_loads():   # a search space can set model__method
    _, pipe = built('binary', 'linear_svm')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); pipe.set_params(model__method='isotonic').fit(X, Y['binary'])
    round_trip(pipe)

def test_allowlist_names_resolve_in_the_installed_packages():
    from importlib import import_module
    from sklearn.base import BaseEstimator
    for n in core._MLNB_CLASSES:
        mod, _, cls = n.rpartition('.')
        assert issubclass(getattr(import_module(mod), cls), BaseEstimator), n
    objs = core.allowed_types('ObjectNode')
    assert {'sklearn.pipeline.Pipeline', 'sklearn.ensemble._forest.RandomForestClassifier', 'sklearn._loss.loss.HalfBinomialLoss'} <= objs
    assert not any(n.startswith(('numpy.', 'builtins.', 'os.', 'scipy.')) for n in objs)

# ---------------------------------------------------------------- crafted files

def crafted(data: bytes, rewrite) -> bytes:
    "The skops file `data` with `rewrite(schema)` applied to its schema.json: a file as an attacker would write it."
    src, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    schema = json.loads(src.read('schema.json')); rewrite(schema)
    with zipfile.ZipFile(out, 'w') as z:
        for n in src.namelist(): z.writestr(n, json.dumps(schema) if n == 'schema.json' else src.read(n))
    return out.getvalue()

def nodes(s):
    "Every skops node in a schema."
    if isinstance(s, dict):
        if '__loader__' in s: yield s
        for v in s.values(): yield from nodes(v)
    elif isinstance(s, list):
        for v in s: yield from nodes(v)

F2PY = textwrap.dedent('''
    import io, json, sys, zipfile
    sys.path.insert(0, sys.argv[1])
    from test_model_files import crafted, nodes
    from sklearn.linear_model import LogisticRegression
    from mlnb.core import MlnbError, load_model, model_bytes
    data = model_bytes(LogisticRegression().fit([[0], [1], [2], [3]], [0, 0, 1, 1]))
    def rename(loader):
        def f(schema):
            node = next(n for n in nodes(schema) if n['__loader__'] == loader)
            node.update(__module__='numpy.f2py.__main__', __class__='X')
        return f
    for loader in ('ObjectNode', 'NdArrayNode', 'TypeNode', 'DictNode', 'JsonNode'):
        try: load_model(crafted(data, rename(loader)), where=f'evil-{loader}.skops'); print('LOADED', loader)
        except MlnbError as e: print('REFUSED', e)
    print('f2py imported' if 'numpy.f2py.__main__' in sys.modules else 'f2py not imported')
''')

def test_f2py_name_is_refused_before_anything_is_imported():
    r = subprocess.run([sys.executable, '-c', F2PY, str(ROOT/'tests')], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr                      # the process survives
    lines = r.stdout.splitlines()
    assert lines[-1] == 'f2py not imported', r.stdout
    assert len([l for l in lines if l.startswith('REFUSED')]) == 5 and not any(l.startswith('LOADED') for l in lines), r.stdout
    assert lines[0].startswith("REFUSED evil-ObjectNode.skops: refusing to load a model holding unknown types ['numpy.f2py.__main__.X (skops ObjectNode)']"), r.stdout

def test_f2py_name_is_a_real_threat():
    "Importing the module the crafted file names runs f2py and ends the process: why the name must be refused before any import."
    r = subprocess.run([sys.executable, '-c', "import importlib; importlib.import_module('numpy.f2py.__main__'); print('survived')"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert 'survived' not in r.stdout

def test_split_names_do_not_match_allowed_ones():
    data = model_bytes(LogisticRegression().fit([[0], [1]], [0, 1]))
    split = crafted(data, lambda s: s.update(__module__='sklearn', __class__='linear_model._logistic.LogisticRegression'))
    with pytest.raises(MlnbError, match=r"unknown types \[\"'sklearn':'linear_model._logistic.LogisticRegression' \(skops ObjectNode\)\"\]"): load_model(split)

def test_bit_generator_name_is_checked_too():
    "A Generator's bit generator is named inside its state, not as a type: skops' audit, with exactly the file's types trusted, refuses another name."
    from sklearn.ensemble import HistGradientBoostingClassifier
    data = model_bytes(HistGradientBoostingClassifier(max_iter=2).fit(np.c_[np.arange(40.)], np.arange(40) % 2))
    def rename(schema):
        gen = next(n for n in nodes(schema) if n['__loader__'] == 'RandomGeneratorNode')
        gen['content']['bit_generator']['content']['bit_generator']['content'] = '"seed"'
    with pytest.raises(MlnbError, match='numpy.random.seed'): load_model(crafted(data, rename))

def test_system_exit_from_importing_a_type_is_a_refusal(tmp_path, monkeypatch):
    (tmp_path/'mlnb_exits.py').write_text('raise SystemExit("imported")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    data = crafted(model_bytes(LogisticRegression().fit([[0], [1]], [0, 1])), lambda s: s.update(__module__='mlnb_exits', __class__='Model'))
    with pytest.raises(MlnbError, match=r"unknown types \['mlnb_exits.Model \(skops ObjectNode\)'\]"): load_model(data)
    assert 'mlnb_exits' not in sys.modules                             # not on the list: never imported
    core.EXTRA_TYPES.add('mlnb_exits.Model')                           # the documented extension set
    try:
        with pytest.raises(MlnbError, match=r"m.skops: refusing a model whose mlnb_exits.Model raised SystemExit\(imported\)"): load_model(data, where='m.skops')
    finally: core.EXTRA_TYPES.discard('mlnb_exits.Model'); sys.modules.pop('mlnb_exits', None)
    assert not allowed_type('ObjectNode', 'mlnb_exits.Model')

STATE = '''
from sklearn.base import BaseEstimator
class Exits(BaseEstimator):
    def __setstate__(self, state): raise SystemExit('building')
class Interrupted(BaseEstimator):
    def __setstate__(self, state): raise KeyboardInterrupt
'''

def test_base_exceptions_while_building_a_type(tmp_path, monkeypatch):
    (tmp_path/'mlnb_states.py').write_text(STATE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import mlnb_states
    inner = lambda cls: model_bytes(Pipeline([('prep', getattr(mlnb_states, cls)()), ('model', LogisticRegression())]))  # saving works, building raises
    for c in ('Exits', 'Interrupted'): core.EXTRA_TYPES.add(f'mlnb_states.{c}')
    try:
        with pytest.raises(MlnbError, match=r'whose mlnb_states.Exits raised SystemExit\(building\)'): load_model(inner('Exits'))
        with pytest.raises(KeyboardInterrupt): load_model(inner('Interrupted'))    # Ctrl-C still stops a load
    finally:
        for c in ('Exits', 'Interrupted'): core.EXTRA_TYPES.discard(f'mlnb_states.{c}')
        sys.modules.pop('mlnb_states', None)

# ---------------------------------------------------------------- parameters that reach the file system

def docs(tmp_path, n=12):
    paths = []
    for i in range(n):
        (p := tmp_path/f'doc{i}.txt').write_text(' '.join(WORDS[i % 5: i % 5 + 4])); paths.append(str(p))
    return paths, [i % 2 for i in range(n)]

def test_filename_vectorizer_is_refused_naming_input(tmp_path):
    paths, y = docs(tmp_path)
    pipe = Pipeline([('tfidf', TfidfVectorizer(input='filename')), ('model', LogisticRegression())]).fit(paths, y)
    data = model_bytes(pipe)
    assert refused_types(model_types(data)) == []                     # every type is allowed: only the parameter gives it away
    with pytest.raises(MlnbError, match=r"m.skops: refusing a model whose parameters reach the file system: \[\"Pipeline.steps\[0\]\[1\]: TfidfVectorizer.input='filename'"):
        load_model(data, where='m.skops')
    ref = save_artifact(pipe, 'pipeline', tmp_path/'run'/'artifacts'/'train')
    with pytest.raises(MlnbError, match='input'): load_artifact(ref, tmp_path/'run')
    reg = Registry(tmp_path/'registry')                                # refused at registration, naming the parameter
    with pytest.raises(MlnbError, match=r"refusing to register model 'files'.*TfidfVectorizer.input='filename'"):
        reg.register('files', pipe, schema={}, reference=pd.DataFrame({'text': paths}), metrics={})
    import mlnb.registry                                              # a registry written without that check (an older mlnb): refused when loaded
    real, mlnb.registry.risky_params = mlnb.registry.risky_params, lambda obj: []
    try: reg.register('files', pipe, schema={}, reference=pd.DataFrame({'text': paths}), metrics={})
    finally: mlnb.registry.risky_params = real
    with pytest.raises(MlnbError, match=r"TfidfVectorizer.input='filename'"): reg.load('files@1')

def test_vectorizer_found_in_fitted_attributes_and_containers(tmp_path):
    paths, y = docs(tmp_path)
    ct = ColumnTransformer([('text', Tfidf(input='filename'), 'path')]).fit(pd.DataFrame({'path': paths}))
    ct.set_params(text=Tfidf())                                       # get_params() now shows nothing; the fitted transformers_ keep the reader
    assert ct.get_params()['text'].input == 'content'
    with pytest.raises(MlnbError, match=r"ColumnTransformer.transformers_\[0\]\[1\]: Tfidf.input='filename'"): load_model(model_bytes(ct))
    with pytest.raises(MlnbError, match=r"input='file'"): load_model(model_bytes(Pipeline([('t', TfidfVectorizer(input='file'))])))

def test_pipeline_memory_is_refused(tmp_path):
    pipe = Pipeline([('model', LogisticRegression())], memory=str(tmp_path/'cache')).fit([[0], [1]], [0, 1])
    with pytest.raises(MlnbError, match=r"Pipeline.memory='.*cache'"): load_model(model_bytes(pipe))
    _, ok = built('binary', 'linear')
    assert risky_params(ok) == [] and ok.memory is None

# ---------------------------------------------------------------- artifacts against the run's manifest

def executed_notebook(path, **glued):
    "An executed notebook at `path` that glued `glued`, with the outputs scrapbook's `glue` leaves."
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output
    outs = [new_output('display_data', data={f'{core.SCRAP_MIME}.json+json': dict(name=k, data=v, encoder='json', version=1)},
                       metadata={'scrapbook': dict(name=k, data=True, display=False)}) for k, v in glued.items()]
    nbformat.write(new_notebook(cells=[new_code_cell('glue', outputs=outs)]), str(path))

def manifest(run, stage, nb):
    "run.json as the runner leaves it once `stage` ended: its glued values and artifact references, read from its executed notebook."
    glued, arts = split_scraps(core.read_scraps(nb))
    write_text(run/'run.json', json.dumps({'run_id': run.name, 'status': 'running', 'stages': {
        stage: dict(status='ok', output=nb.name, glued=glued, artifacts=arts), 'evaluate': dict(status='running', glued={}, artifacts={})}}, indent=1))

def test_upstream_artifact_is_checked_against_the_manifest(tmp_path):
    run = tmp_path/'runs'/'r1'; art = run/'artifacts'/'train'; nb = run/'04_train.ipynb'
    _, pipe = built('binary', 'linear')
    executed_notebook(nb, pipeline=save_artifact(pipe, 'pipeline', art), task='binary')
    up = Upstream({'train': str(nb)})
    assert up.load('pipeline').predict(X).tolist() == pipe.predict(X).tolist()     # no manifest yet: the glued hash alone
    manifest(run, 'train', nb)
    recorded = json.loads((run/'run.json').read_text())['stages']['train']['artifacts']['pipeline']['sha256']
    assert Upstream({'train': str(nb)}).load('pipeline').predict(X).tolist() == pipe.predict(X).tolist()
    # the model and the reference glued beside it rewritten together, after the stage ended
    _, other = built('binary', 'random_forest')
    executed_notebook(nb, pipeline=(new := save_artifact(other, 'pipeline', art)), task='binary')
    with pytest.raises(MlnbError) as e: Upstream({'train': str(nb)}).load('pipeline')
    msg = str(e.value)
    assert str(art/'pipeline.skops') in msg and new['sha256'][:12] in msg and recorded[:12] in msg and 'run.json' in msg
    # a manifest that does not record the artifact (its stage still running) leaves the glued hash to decide
    write_text(run/'run.json', json.dumps({'stages': {'train': dict(status='running', glued={}, artifacts={})}}))
    assert Upstream({'train': str(nb)}).load('pipeline').predict(X).tolist() == other.predict(X).tolist()
