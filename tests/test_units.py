"Unit tests of the exported functions."
import json, os
import numpy as np, pandas as pd, pytest
from mlnb.core import (MlnbError, Upstream, atomic_path, is_artifact, load_artifact, load_model, save_artifact, sha256_file, write_text)
from mlnb.pipeline import parse_type, type_ok, stage_order
from mlnb.engine import notebook_imports
from mlnb.ingest import read_table, sample_frame
from mlnb.validate import apply_policy, build_schema, infer_spec, validate_frame
from mlnb.prepare import dedupe, normalise_missing, split
from mlnb.train import cross_validate_pipeline, make_pipeline
from mlnb.evaluate import classification_metrics, positive_proba
from conftest import ROOT

def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    write_text(tmp_path/'m.json', '{"v": 1}')
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path/'m.json') as tmp:
            tmp.write_text('{"v": 2, "half'); raise KeyboardInterrupt
    assert json.loads((tmp_path/'m.json').read_text()) == {'v': 1}
    assert [p.name for p in tmp_path.iterdir()] == ['m.json']

def test_artifact_round_trip_and_tamper(tmp_path):
    art = tmp_path/'run'/'artifacts'/'train'
    df = pd.DataFrame({'x': np.arange(5), 's': list('abcde')})
    ref = save_artifact(df, 'data', art)
    assert ref['path'] == 'artifacts/train/data.parquet' and ref['bytes'] == (art/'data.parquet').stat().st_size
    assert ref['sha256'] == sha256_file(art/'data.parquet') and is_artifact(ref)
    pd.testing.assert_frame_equal(load_artifact(ref, tmp_path/'run'), df)
    with open(art/'data.parquet', 'ab') as f: f.write(b'x')
    with pytest.raises(MlnbError, match='changed after it was written'): load_artifact(ref, tmp_path/'run')
    (art/'data.parquet').unlink()
    with pytest.raises(MlnbError, match='missing'): load_artifact(ref, tmp_path/'run')

def test_model_files_refuse_unknown_types(tmp_path):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer
    m = FunctionTransformer(func=os.system)          # a model that would call os.system
    sio.dump(m, tmp_path/'evil.skops')
    with pytest.raises(MlnbError, match='unknown types'): load_model(tmp_path/'evil.skops')

def test_upstream_names_missing_stage_and_value(tmp_path):
    up = Upstream({'ingest': str(tmp_path/'missing.ipynb')})
    with pytest.raises(MlnbError, match="no upstream stage 'train'"): up['train']
    with pytest.raises(MlnbError, match='does not exist'): up['ingest']

def test_parse_type_and_type_ok():
    assert parse_type('int') == ((int,), False) and parse_type('Optional[dict]') == ((dict,), True)
    assert type_ok(1, *parse_type('float')) and not type_ok('1', *parse_type('float'))
    assert not type_ok(True, *parse_type('int')) and type_ok(None, *parse_type('None'))
    assert not type_ok(None, *parse_type('str')) and type_ok(None, *parse_type('str | None'))

def test_stage_order_and_errors():
    assert stage_order({'c': {'upstream': ['a', 'b']}, 'b': {'upstream': ['a']}, 'a': {}}, 'p.yaml') == ['a', 'b', 'c']
    with pytest.raises(MlnbError, match=r'cycle: (a -> b -> a|b -> a -> b)'): stage_order({'a': {'upstream': ['b']}, 'b': {'upstream': ['a']}}, 'p')

def test_notebook_imports():
    mods = notebook_imports(ROOT/'nbs'/'40_train.ipynb')
    assert 'sklearn.ensemble' in mods and 'pandas' in mods and 'mlnb.core' in mods and '__future__' not in mods

def test_stage_keys_reach_every_module_and_only_those():
    "A stage's key holds every mlnb module it can reach (imports inside functions and ifs too), and explain's no longer holds the server."
    from mlnb.cache import module_hashes, notebook_modules
    keys = {nb: set(module_hashes(notebook_modules(ROOT/'nbs'/f'{nb}.ipynb'))) for nb in ('10_ingest', '60_explain', '70_deploy')}
    assert 'mlnb/sources.py' in keys['10_ingest']          # imported only for SQL and HTTP sources
    assert 'mlnb/trees.py' in keys['60_explain'] and 'mlnb/serve.py' not in keys['60_explain']
    assert {'mlnb/registry.py', 'mlnb/evaluate.py'} <= keys['70_deploy']

def test_one_lower_is_better_list():
    "Which metrics count lower-is-better is written once (mlnb.registry); drift's performance check and sweeps use it."
    import re
    defs = [f.name for f in (ROOT/'mlnb').glob('*.py') if re.search(r"^\s*[A-Za-z_]*LOWER[A-Za-z_]*\s*=\s*\(", f.read_text(), re.M)]
    assert defs == ['registry.py'], defs
    from mlnb.drift import performance_change
    t = performance_change({'mape': 0.1, 'median_ae': 2.0}, {'mape': 0.3, 'median_ae': 6.0}).set_index('metric')
    assert t.flag.all(), t

def test_read_table_formats(tmp_path):
    df = pd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})
    df.to_csv(tmp_path/'t.csv', index=False); df.to_parquet(tmp_path/'t.parquet')
    pd.testing.assert_frame_equal(read_table(tmp_path/'t.csv'), read_table(tmp_path/'t.parquet'))
    (tmp_path/'empty.csv').write_text('a,b\n')
    with pytest.raises(MlnbError, match='has no rows'): read_table(tmp_path/'empty.csv')
    assert len(read_table('data/adult.csv.gz')) == 48842
    assert sample_frame(df, 1, 0).shape == (1, 2) and sample_frame(df, 0, 0) is df

def test_validate_schema_policies():
    df = pd.DataFrame({'age': [25, 200, 40, 31], 'sex': ['F', 'M', 'Q', 'F'], 'income': ['a', 'b', 'a', None]})
    sch = build_schema({'age': {'dtype': 'int', 'ge': 17, 'le': 100}, 'sex': {'isin': ['F', 'M']}, 'income': {'dtype': 'str'}})
    f = validate_frame(df, sch)
    assert set(zip(f['column'], f['row'])) == {('age', 1), ('sex', 2), ('income', 3)}
    kept, rejected = apply_policy(df, f, 'drop')
    assert kept['age'].tolist() == [25] and sorted(rejected.index) == [1, 2, 3]
    with pytest.raises(MlnbError, match='3 schema failures'): apply_policy(df, f, 'fail')
    with pytest.raises(MlnbError, match="policy 'warn'"): apply_policy(df, f, 'warn')
    assert validate_frame(df, build_schema(infer_spec(df))).empty

def test_prepare_functions():
    df = pd.DataFrame({'w': ['a ', ' ?', 'b', 'b'] * 5, 'y': ['p', 'n', 'n', 'n'] * 5})
    clean = normalise_missing(df, ['?'])
    assert clean['w'].isna().sum() == 5 and clean['w'][0] == 'a'
    d, n = dedupe(clean); assert (len(d), n) == (3, 17)
    tr, te = split(df.assign(i=range(20)), 'y', 0.25, 1)
    assert (len(tr), len(te)) == (15, 5) and (te['y'] == 'p').sum() in (1, 2)
    tr2, _ = split(df.assign(i=range(20)), 'y', 0.25, 1)
    pd.testing.assert_frame_equal(tr, tr2)                      # seeded: the same split again

@pytest.mark.parametrize('name', ['logistic', 'random_forest', 'hgb'])
def test_train_each_model(name):
    df = normalise_missing(read_table('data/adult.csv.gz').sample(1500, random_state=0), ['?'])
    X, y = df.drop(columns='income'), df['income']
    pipe = make_pipeline(X, name, {'n_estimators': 20} if name == 'random_forest' else {}, seed=0)
    cv = cross_validate_pipeline(pipe, X, y, 2, ['roc_auc', 'neg_log_loss'], 0)
    assert list(cv.columns) == ['fold', 'roc_auc', 'log_loss', 'fit_s'] and (cv['log_loss'] > 0).all()
    assert cv['roc_auc'].mean() > 0.75
    p = positive_proba(pipe.fit(X, y), X.head(3), '>50K')
    assert p.shape == (3,) and ((p >= 0) & (p <= 1)).all()
    with pytest.raises(MlnbError, match="positive class 'yes'"): positive_proba(pipe, X.head(3), 'yes')

def test_classification_metrics():
    m = classification_metrics(pd.Series(['y', 'n', 'y', 'n']), np.array([.9, .6, .4, .1]), 'y', 0.5)
    assert (m['accuracy'], m['precision'], m['recall'], m['f1'], m['roc_auc']) == (0.5, 0.5, 0.5, 0.5, 0.75)
    assert m['pr_auc'] == pytest.approx(0.8333, abs=1e-4) and m['log_loss'] > 0
