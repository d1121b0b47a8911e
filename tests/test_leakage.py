"Train's leakage guard and class weights: a row number of a file sorted by its target, or a copy of the target, stops a run (leakage: fail) or is flagged in the train notebook (warn); real tables flag nothing; multiclass models weigh their classes."
import json, re
import numpy as np, pandas as pd, pytest
from sklearn import datasets
from mlnb.core import load_artifact, read_scraps
from mlnb.ingest import read_table
from mlnb.prepare import normalise_missing
from mlnb.train import leak_threshold, leakage_scores
from conftest import ROOT, mlnb, write_params

def table_params(csv, target, train=None, prepare=None, model='hgb') -> dict:
    "A parameter file for the table `csv`: ingest → validate (inferred schema) → prepare → features → train (2 folds)."
    return {'description': f'{target} from {csv.name}', 'shared': {'target': target, 'seed': 42, 'missing_markers': ['?'], 'model': model},
            'stages': {'ingest': {'params': {'path': str(csv), 'sample_rows': 0}},
                       'validate': {'upstream': ['ingest'], 'params': {'policy': 'fail'}},
                       'prepare': {'upstream': ['validate'], 'params': prepare or {}},
                       'features': {'upstream': ['prepare']},
                       'train': {'upstream': ['features', 'prepare'], 'params': {'cv_folds': 2, **(train or {})}}}}

def run(tmp_path, p):
    "`mlnb run` of the parameters `p` in `tmp_path`: the completed process and the run's folder."
    r = mlnb('run', write_params(tmp_path/'p.yaml', p), '--runs-dir', tmp_path/'runs')
    return r, next((tmp_path/'runs').glob('*/run.json')).parent

@pytest.fixture(scope='module')
def adult():
    "1,200 rows of Adult."
    return normalise_missing(read_table(ROOT/'data'/'adult.csv.gz'), ['?']).sample(1200, random_state=0).reset_index(drop=True)

def sorted_by_target(df, tmp_path, **extra):
    "`df` written as the CSV a careless export gives: sorted by income, with its row number as a column (and `extra` columns)."
    out = df.sort_values('income', kind='stable').reset_index(drop=True)
    out = out.assign(rownum=np.arange(1, len(out) + 1), **{k: f(out) for k, f in extra.items()})
    out.to_csv(tmp_path/'sorted.csv', index=False); return tmp_path/'sorted.csv'

@pytest.mark.slow
def test_a_row_number_of_a_file_sorted_by_the_target_stops_the_run(adult, tmp_path):
    p = table_params(sorted_by_target(adult, tmp_path), 'income', {'leakage': 'fail'}, {'roles': {'rownum': 'numeric'}})   # forced into the features
    r, rundir = run(tmp_path, p)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert re.search(r'train: leakage: rownum \(roc_auc 0\.99\d\d ≥ 0\.99; its order follows the target \(rank correlation 1\.0000 ≥ 0\.98\)\)', out), out
    assert "prepare's `drop: [rownum]`" in out and "train's `leakage: warn`" in out and 'relationship' not in out.split('leakage:')[1], out
    g = read_scraps(rundir/'05_train.ipynb')   # the failed notebook keeps the table it stopped on
    assert g['leakage_flagged'] == ['rownum'] and g['leakage_table'][0]['column'] == 'rownum'
    assert not (rundir/'artifacts'/'train'/'pipeline.skops').exists()   # stopped before the model was fitted

@pytest.mark.slow
def test_warn_runs_on_and_the_glued_table_flags_the_row_number_and_a_copy_of_the_target(adult, tmp_path):
    csv = sorted_by_target(adult, tmp_path, salary=lambda d: d['income'].map({'<=50K': 'low', '>50K': 'high'}))
    r, rundir = run(tmp_path, table_params(csv, 'income', {'leakage': 'warn'}, {'roles': {'rownum': 'numeric'}}))
    assert r.returncode == 0, r.stdout + r.stderr
    g = read_scraps(rundir/'05_train.ipynb')
    assert g['leakage'] == 'warn' and set(g['leakage_flagged']) == {'rownum', 'salary'}
    table = pd.DataFrame(g['leakage_table'])
    assert table.flagged.tolist()[:2] == [True, True] and not table.flagged.iloc[2:].any()    # flagged first, then the rest, best first
    assert (table.score.iloc[2:].diff().dropna() <= 0).all() and (table.threshold == 0.99).all()
    row = table.set_index('column').loc['rownum']
    assert row.score > 0.99 and row.order == pytest.approx(1.0) and 'its order follows the target' in row.reason
    assert table.set_index('column').loc['salary', 'role'] == 'categorical'
    assert 'Flagged: `' in (rundir/'05_train.ipynb').read_text()

def test_the_small_adult_run_flags_nothing(small_run):
    r, rundir, _ = small_run
    assert r.returncode == 0, r.stdout + r.stderr
    g = json.loads((rundir/'run.json').read_text())['stages']['train']['glued']
    assert g['leakage'] == 'warn' and g['leakage_flagged'] == [] and len(g['leakage_table']) == 10
    assert max(t['score'] for t in g['leakage_table']) < 0.9 and g['class_weight'] == 'none'   # Adult: 24% positive, left unweighted

@pytest.mark.slow
def test_a_multiclass_model_weighs_its_classes_by_default(tmp_path):
    wine = datasets.load_wine(as_frame=True).frame.rename(columns={'target': 'cultivar'})
    wine['cultivar'] = wine['cultivar'].map({0: 'barolo', 1: 'grignolino', 2: 'barbera'})
    wine.to_csv(tmp_path/'wine.csv', index=False)
    r, rundir = run(tmp_path, table_params(tmp_path/'wine.csv', 'cultivar'))
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads((rundir/'run.json').read_text())
    g = m['stages']['train']['glued']
    pipe = load_artifact(m['stages']['train']['artifacts']['pipeline'], rundir)
    assert type(pipe.named_steps['model']).__name__ == 'HistGradientBoostingClassifier'
    assert pipe.named_steps['model'].get_params()['class_weight'] == 'balanced' == g['class_weight'] == g['model_params']['class_weight']
    assert 'multiclass' in g['class_weight_reason'] and g['leakage_flagged'] == []

def frames():
    "The tables the guard must not flag: scikit-learn's breast cancer, diabetes, wine and digits."
    for name, task in [('breast_cancer', 'binary'), ('diabetes', 'regression'), ('wine', 'multiclass'), ('digits', 'multiclass')]:
        b = getattr(datasets, f'load_{name}')(as_frame=True)
        yield name, b.data, b.target, task

@pytest.mark.parametrize('name, X, y, task', list(frames()), ids=lambda v: v if isinstance(v, str) else '')
def test_real_tables_flag_no_column(name, X, y, task):
    t = leakage_scores(X, y, task)
    assert not t.flagged.any(), t.head()
    assert t.score.max() < leak_threshold(task, y.nunique()) - 0.01

@pytest.mark.parametrize('name, X, y, task', list(frames())[:3], ids=lambda v: v if isinstance(v, str) else '')
def test_deterministic_functions_of_the_target_are_flagged(name, X, y, task):
    leaky = X.assign(copy=y, twice=y * 2, rownum=y.rank(method='first'))   # rownum: the row number of the table sorted by its target
    if task != 'regression': leaky['said'] = y.map(lambda v: f'the answer is {v}!')   # text derived from the class
    t = leakage_scores(leaky, y, task, {'said': 'text'}).set_index('column')
    assert set(t.index[t.flagged]) == {'copy', 'twice', 'rownum'} | ({'said'} if task != 'regression' else set()), t.head(6)
    assert t.loc['rownum', 'order'] == pytest.approx(1.0)
