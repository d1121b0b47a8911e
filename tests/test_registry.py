"The model registry and model files: exact types, every file checked as read, signatures, old indexes, interrupted registrations."
import hashlib, json, sqlite3, subprocess, sys
from contextlib import closing
import numpy as np, pandas as pd, pytest, yaml
import skops.io as sio
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
import mlnb.pipeline
from mlnb.core import MlnbError, load_artifact, load_model, model_types, save_artifact
from mlnb.deploy import reference_sample
from mlnb.ingest import demo_data
from mlnb.prepare import normalise_missing
from mlnb.registry import Registry
from mlnb.train import make_pipeline
from conftest import ROOT

SCHEMA = yaml.safe_load((ROOT/'params'/'default.yaml').read_text())['stages']['validate']['params']['schema']
SMALL = {'logistic': {}, 'random_forest': {'n_estimators': 5}, 'hgb': {'max_iter': 10}}
X_NEW = demo_data(50, 2).drop(columns='income')

def fitted(kind='logistic', n=600, seed=0):
    df = demo_data(n, seed)
    return make_pipeline(df.drop(columns='income'), kind, SMALL[kind], seed).fit(df.drop(columns='income'), df['income']), df

def register(reg, kind='logistic', n=600, seed=0, name='adult'):
    pipe, df = fitted(kind, n, seed)
    ref = reference_sample(normalise_missing(df, ['?']), pipe, '>50K', n, seed)
    return reg.register(name, pipe, schema=SCHEMA, reference=ref, metrics={'roc_auc': 0.9}, run_id=f'test-{seed}', card='# card'), pipe

def evil_pipeline(target):
    "Only trusted-looking names: numpy.full_like -> builtins.str -> builtins.eval; transforming anything writes `target`."
    code = f"open({str(target)!r}, 'w').write('pwned')"
    return Pipeline([('fill', FunctionTransformer(np.full_like, kw_args={'fill_value': code, 'dtype': object, 'shape': ()})),
                     ('text', FunctionTransformer(str)), ('run', FunctionTransformer(eval))])

def set_row(reg, name, version, **cols):
    "Rewrite index columns as someone who can write registry.db (but has no key) would."
    with closing(sqlite3.connect(reg.db, isolation_level=None)) as c:
        c.execute(f"update versions set {', '.join(f'{k}=?' for k in cols)} where name=? and version=?", (*cols.values(), name, version))

def files_of(reg, name, version):
    with closing(sqlite3.connect(reg.db)) as c:
        return json.loads(c.execute('select files from versions where name=? and version=?', (name, version)).fetchone()[0])

def swap_model(reg, mv, data: bytes, types=None):
    "Replace a version's model file and fix its hashes (and, given, its types) in the index."
    (mv.path/'model.skops').write_bytes(data)
    h = hashlib.sha256(data).hexdigest()
    set_row(reg, mv.name, mv.version, files=json.dumps({**mv.files, 'model.skops': h}), sha256=h,
            **({'types': json.dumps(types)} if types is not None else {}))

@pytest.fixture(autouse=True)
def no_key(monkeypatch): monkeypatch.delenv('MLNB_REGISTRY_KEY', raising=False)

def test_round_trip_and_every_file_checked_as_read(tmp_path):
    reg = Registry(tmp_path); v, pipe = register(reg)
    mv = reg.load(f'adult@{v}')
    assert np.allclose(mv.pipeline.predict_proba(X_NEW), pipe.predict_proba(X_NEW)) and mv.schema == SCHEMA and mv.metrics == {'roc_auc': 0.9}
    assert len(mv.reference()) == 600 and mv.card == '# card'
    assert mv.meta['sha256'] == mv.files['model.skops'] == hashlib.sha256((mv.path/'model.skops').read_bytes()).hexdigest()
    assert sorted(mv.files) == ['card.md', 'meta.json', 'metrics.json', 'model.skops', 'reference.parquet', 'schema.json']
    with pytest.raises(MlnbError, match='no production version'): reg.load('adult')
    with pytest.raises(MlnbError, match="no model 'nope'"): reg.load('nope')
    reads = {'model.skops': lambda: reg.load('adult@1'), 'schema.json': lambda: reg.load('adult@1'), 'metrics.json': lambda: reg.load('adult@1'),
             'meta.json': lambda: reg.load('adult@1'), 'reference.parquet': lambda: reg.load('adult@1').reference(), 'card.md': lambda: reg.load('adult@1').card}
    for fn, read in reads.items():
        good = (mv.path/fn).read_bytes()
        (mv.path/fn).write_bytes(good + b' ')
        with pytest.raises(MlnbError, match=f'{fn} has sha256 .* it changed after it was written'): read()
        (mv.path/fn).unlink()
        with pytest.raises(MlnbError, match=f'{fn} is missing'): read()
        (mv.path/fn).write_bytes(good); read()

@pytest.mark.parametrize('kind', ['random_forest', 'hgb'])
def test_tree_pipelines_round_trip(tmp_path, kind):
    reg = Registry(tmp_path); v, pipe = register(reg, kind)
    assert np.allclose(reg.load(f'adult@{v}').pipeline.predict_proba(X_NEW), pipe.predict_proba(X_NEW))

def test_pipeline_of_trusted_names_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path/'pwned'
    f = tmp_path/'evil.skops'; sio.dump(evil_pipeline(target), f)
    # the file is a real threat: under the old rule (every type under builtins./numpy./sklearn. trusted) it loads and writes the file
    untrusted = sio.get_untrusted_types(file=f)
    assert untrusted and all(t.startswith(('sklearn.', 'numpy.', 'scipy.', 'builtins.', 'collections.', 'mlnb.')) for t in untrusted)
    sio.load(f, trusted=untrusted).transform(X_NEW)
    assert target.read_text() == 'pwned'; target.unlink()
    for load in (lambda: load_model(f), lambda: load_model(f.read_bytes())):
        with pytest.raises(MlnbError, match=r"unknown types \['numpy.full_like \(a function\)', 'builtins.eval \(skops TypeNode\)'\]"): load()
    art = tmp_path/'run'/'artifacts'/'train'
    ref = save_artifact(evil_pipeline(target), 'model', art)
    with pytest.raises(MlnbError, match='numpy.full_like'): load_artifact(ref, tmp_path/'run')
    reg = Registry(tmp_path/'registry')
    with pytest.raises(MlnbError, match="refusing to register model 'evil'.*numpy.full_like"):
        reg.register('evil', evil_pipeline(target), schema={}, reference=X_NEW, metrics={})
    assert reg.versions().empty and not (reg.root/'evil').exists()
    # someone who can write the files and the index (no key) swaps a registered model for the crafted one
    v, _ = register(reg); mv = reg.load(f'adult@{v}'); evil = f.read_bytes()
    swap_model(reg, mv, evil)
    with pytest.raises(MlnbError, match='numpy.full_like'): reg.load(f'adult@{v}')
    swap_model(reg, mv, evil, types=model_types(evil))
    with pytest.raises(MlnbError, match='numpy.full_like'): reg.load(f'adult@{v}')
    assert not target.exists()

def test_mlnb_function_is_refused(tmp_path):
    pipe = Pipeline([('run', FunctionTransformer(mlnb.pipeline.run))])
    with pytest.raises(MlnbError, match=r"mlnb.pipeline.run \(a function\)"): load_model(sio.dumps(pipe))
    with pytest.raises(MlnbError, match='mlnb.pipeline.run'): Registry(tmp_path).register('m', pipe, schema={}, reference=X_NEW, metrics={})

def test_model_with_other_types_than_registered_is_refused(tmp_path):
    reg = Registry(tmp_path); v, _ = register(reg); mv = reg.load(f'adult@{v}')
    forest = sio.dumps(fitted('random_forest')[0])      # only allowed types, but not the ones registered
    swap_model(reg, mv, forest)
    with pytest.raises(MlnbError, match=r"types differ from those recorded at registration \(added: .*sklearn.tree._tree.Tree \(TreeNode\)"):
        reg.load(f'adult@{v}')

def test_signed_versions(tmp_path, monkeypatch):
    reg = Registry(tmp_path)
    v0, _ = register(reg, seed=1)                       # registered without a key
    monkeypatch.setenv('MLNB_REGISTRY_KEY', 'registry-key-0123456789abcdef')
    v, _ = register(reg); mv = reg.load(f'adult@{v}')
    with pytest.raises(MlnbError, match=f'adult v{v0} is not signed'): reg.load(f'adult@{v0}')
    good = (mv.path/'schema.json').read_bytes(); bad = b'{}'
    (mv.path/'schema.json').write_bytes(bad)
    set_row(reg, 'adult', v, files=json.dumps({**mv.files, 'schema.json': hashlib.sha256(bad).hexdigest()}))
    with pytest.raises(MlnbError, match='signature does not match'): reg.load(f'adult@{v}')
    (mv.path/'schema.json').write_bytes(good); set_row(reg, 'adult', v, files=json.dumps(mv.files))
    reg.load(f'adult@{v}')
    monkeypatch.setenv('MLNB_REGISTRY_KEY', 'another-key-0123456789abcdef')
    with pytest.raises(MlnbError, match='signature does not match'): reg.load(f'adult@{v}')
    monkeypatch.delenv('MLNB_REGISTRY_KEY')
    assert reg.load(f'adult@{v}').version == v and reg.load(f'adult@{v0}').version == v0   # without the key only hashes are checked

OLD_SQL = '''
create table versions(name text, version integer, created text, run_id text, sha256 text,
  metrics text, gate_passed integer, gate_reasons text, primary key (name, version));
create table aliases(name text, alias text, version integer, updated text, primary key (name, alias));
create table events(id integer primary key autoincrement, name text, time text, action text, alias text, version integer, note text);
'''

def test_old_index_is_migrated_and_its_versions_must_be_registered_again(tmp_path):
    m = LogisticRegression().fit([[0.], [1.]], ['a', 'b'])
    (tmp_path/'toy'/'v1').mkdir(parents=True); sio.dump(m, tmp_path/'toy'/'v1'/'model.skops')
    for fn in ('schema.json', 'metrics.json', 'meta.json'): (tmp_path/'toy'/'v1'/fn).write_text('{}')
    with closing(sqlite3.connect(tmp_path/'registry.db', isolation_level=None)) as c:
        c.executescript(OLD_SQL)
        c.execute("insert into versions values ('toy', 1, '2025-01-01', 'r', ?, '{}', 1, '[]')", (hashlib.sha256((tmp_path/'toy'/'v1'/'model.skops').read_bytes()).hexdigest(),))
        c.execute("insert into aliases values ('toy', 'production', 1, '2025-01-01')")
    reg = Registry(tmp_path)
    with closing(sqlite3.connect(reg.db)) as c: assert {'files', 'types', 'signature'} <= {r[1] for r in c.execute('pragma table_info(versions)')}
    assert reg.versions()['version'].tolist() == [1] and reg.resolve('toy') == ('toy', 1)
    with pytest.raises(MlnbError, match='registered by an older mlnb .* register it again'): reg.load('toy')
    X = pd.DataFrame({'x': [0., 1.]})
    assert reg.register('toy', LogisticRegression().fit(X, ['a', 'b']), schema={}, reference=X, metrics={}) == 2
    assert reg.load('toy@2').pipeline.predict(X).tolist() == ['a', 'b']

CRASH = '''
import os, sys
import pandas as pd
from sklearn.linear_model import LogisticRegression
from mlnb.registry import Registry
reg = Registry(sys.argv[1]); X = pd.DataFrame({'x': [0., 1.]})
real = os.replace
def crash(src, dst): real(src, dst); os._exit(3)     # the version folder is in place, the index row never committed
os.replace = crash
reg.register('toy', LogisticRegression().fit(X, ['a', 'b']), schema={}, reference=X, metrics={})
'''

def test_crash_between_folder_and_commit_does_not_block_registration(tmp_path):
    reg = Registry(tmp_path); X = pd.DataFrame({'x': [0., 1.]}); m = LogisticRegression().fit(X, ['a', 'b'])
    assert reg.register('toy', m, schema={}, reference=X, metrics={}) == 1
    r = subprocess.run([sys.executable, '-c', CRASH, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    assert (tmp_path/'toy'/'v2'/'model.skops').exists() and reg.versions()['version'].tolist() == [1]
    assert reg.register('toy', m, schema={'x': {}}, reference=X, metrics={}) == 2
    assert reg.load('toy@2').schema == {'x': {}}
    assert [len(list(p.iterdir())) for p in (tmp_path/'toy').glob('.orphan-v2-*')] == [6]   # moved aside whole, not deleted

def test_allowlist_takes_the_models_later_work_adds():
    df = demo_data(400, 0); X, y, age = df.drop(columns='income'), df['income'], df['age'].astype(float)
    Xr = X.drop(columns='race'); docs = ['good fine day', 'bad awful night', 'fine good night', 'awful bad day'] * 5
    with_model = lambda m: make_pipeline(X, 'linear', {}, 0).set_params(model=m)  # one-hot, imputed: any model takes it
    cases = [(with_model(HistGradientBoostingRegressor(max_iter=5)), X, age), (with_model(RandomForestRegressor(n_estimators=3)), X, age),
             (with_model(Ridge()), X, age), (make_pipeline(Xr, 'hgb', {'max_iter': 5}, 0), Xr, df['race']),  # native categories: hgb keeps partial(check_array)
             (make_pipeline(Xr, 'logistic', {}, 0), Xr, df['race']),
             (HistGradientBoostingClassifier(max_iter=5, early_stopping=True, validation_fraction=0.2), X.select_dtypes('number'), y),
             (Pipeline([('tfidf', TfidfVectorizer()), ('model', LogisticRegression())]), docs, [0, 1] * 10)]
    for model, Xs, ys in cases:
        model.fit(Xs, ys)
        assert (load_model(sio.dumps(model)).predict(Xs) == model.predict(Xs)).all()

def test_no_model_named_means_the_only_one(tmp_path):
    "serve, predict and monitor without --model take the registry's only model; with several, or none, the error names what it holds."
    from sklearn.linear_model import LogisticRegression
    reg = Registry(tmp_path/'registry'); X = pd.DataFrame({'x': [0., 1, 2, 3]})
    with pytest.raises(MlnbError, match='holds no model yet'): reg.pick(None)
    reg.register('wine', LogisticRegression().fit(X, ['a', 'a', 'b', 'b']), schema={}, reference=X, metrics={})
    assert reg.pick(None) == 'wine' and reg.pick('other@2') == 'other@2'
    reg.register('cars', LogisticRegression().fit(X, ['a', 'a', 'b', 'b']), schema={}, reference=X, metrics={})
    with pytest.raises(MlnbError, match=r'name the model: --model NAME\[@alias\|version\] \(.* holds cars, wine\)'): reg.pick(None)
