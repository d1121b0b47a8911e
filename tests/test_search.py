"Choosing and tuning the model: grid, random and Bayesian searches on small data, a Bayesian study started again, the corrected t-test, and the decision threshold chosen on training rows only."
import json
import numpy as np, pandas as pd, pytest, yaml
import optuna
from sklearn.base import clone
from mlnb.ingest import demo_data
from mlnb.prepare import normalise_missing
from mlnb.train import (best_trials, bayes_search, check_space, choose_threshold, compose, make_cv, make_pipeline, make_preprocessor,
                        run_search)
from conftest import ROOT, mlnb, write_params

@pytest.fixture(scope='module')
def adult():
    df = normalise_missing(demo_data(1200, 0), ['?'])
    return df.drop(columns='income'), df['income']

@pytest.fixture(scope='module')
def hgb(adult):
    X, _ = adult
    return compose(make_preprocessor(X, 'hgb'), 'hgb', dict(max_iter=30), 0, [], 'binary')

SPACE = {'learning_rate': {'low': 0.03, 'high': 0.3, 'log': True}, 'max_leaf_nodes': [4, 8, 16, 31]}

@pytest.mark.parametrize('search, n, expect', [('grid', 0, 4), ('random', 5, 5), ('bayes', 6, 6)])
def test_each_search_runs_its_trials_and_picks_a_best(adult, hgb, search, n, expect, tmp_path):
    X, y = adult
    space = check_space(hgb, {'max_leaf_nodes': [4, 8, 16, 31]} if search == 'grid' else SPACE)
    rows = run_search(search, hgb, space, X, y, make_cv('binary', 3, 0), 'roc_auc', n, 0, storage=f'sqlite:///{tmp_path}/s.db', candidate='hgb')
    t = pd.DataFrame(rows)
    assert len(t) == expect and set(t.state) <= {'COMPLETE', 'PRUNED'}
    done = t[t.state == 'COMPLETE']
    assert (done.folds == 3).all() and done['mean'].between(0.6, 1).all()
    b = best_trials(t).iloc[0]
    assert b['mean'] == done['mean'].max() and set(b.params) == set(space)

def test_a_bayes_study_started_again_keeps_its_finished_trials(adult, hgb, tmp_path):
    X, y = adult
    db, space, cv = f'sqlite:///{tmp_path}/study.db', check_space(hgb, SPACE), make_cv('binary', 3, 0)
    first = bayes_search(hgb, space, X, y, cv, 'roc_auc', 3, 0, storage=db, candidate='hgb')
    study = optuna.load_study(study_name='hgb', storage=db)
    study.ask()                                 # a trial cut off mid-way, as by Ctrl-C or a killed machine
    again = bayes_search(hgb, space, X, y, cv, 'roc_auc', 5, 0, storage=db, candidate='hgb')
    assert [r['fold_scores'] for r in again[:3]] == [r['fold_scores'] for r in first] and len(again) == 5
    states = [t.state.name for t in optuna.load_study(study_name='hgb', storage=db).trials]
    assert states.count('FAIL') == 1 and states.count('RUNNING') == 0 and len(states) == 6
    t = optuna.load_study(study_name='hgb', storage=db).trials[0]
    assert len(t.user_attrs['fold_scores']) == 3 and t.user_attrs['fit_s'] > 0 and set(t.params) == {'model__learning_rate', 'model__max_leaf_nodes'}

def test_pruning_saves_fold_fits(adult, hgb):
    X, y = adult
    space = check_space(hgb, {'learning_rate': {'low': 0.001, 'high': 0.5, 'log': True}, 'max_leaf_nodes': [2, 31]})
    t = pd.DataFrame(bayes_search(hgb, space, X, y, make_cv('binary', 5, 0), 'roc_auc', 16, 0))
    assert (t.state == 'PRUNED').any() and t.folds.sum() < 16 * 5
    assert (t[t.state == 'PRUNED'].folds < 5).all()

def test_a_search_run_through_the_pipeline(tmp_path):
    p = yaml.safe_load((ROOT/'params'/'adult-search.yaml').read_text())
    p['stages']['ingest']['params']['sample_rows'] = 1500
    tr = p['stages']['train']['params']
    tr.update(cv_folds=3, n_trials=4, threshold='auto', candidates=[{'model': 'linear'}, tr['candidates'][-1]])
    tr['candidates'][-1]['space']['max_iter'] = {'low': 20, 'high': 60, 'type': 'int'}
    for s in ('explain', 'deploy'): p['stages'].pop(s)
    r = mlnb('run', write_params(tmp_path/'s.yaml', p), '--runs-dir', tmp_path/'runs')
    assert r.returncode == 0, r.stdout + r.stderr
    run = next((tmp_path/'runs').iterdir()); m = json.loads((run/'run.json').read_text())
    g = m['stages']['train']['glued']
    assert g['search'] == 'bayes' and g['selected'] in ('linear', 'hgb') and {c['candidate'] for c in g['candidates']} == {'linear', 'hgb'}
    assert {c['candidate']: c['trials'] for c in g['candidates']} == {'linear': 1, 'hgb': 4}
    assert 'p' in g['ttest'] and 0 < g['threshold'] < 1 and 'cross-validated' in g['threshold_source']
    trials = pd.read_parquet(run/m['stages']['train']['artifacts']['trials']['path'])
    assert len(trials) == 5 and set(trials.candidate) == {'linear', 'hgb'}
    assert len(optuna.load_study(study_name='hgb', storage=f"sqlite:///{run/'artifacts'/'train'/'search.db'}").trials) == 4   # optuna-dashboard reads this file
    # the threshold never sees a test row: with prepare's test rows gone, the train stage run again picks the same one
    test_file = run/m['stages']['prepare']['artifacts']['test']['path']; test_file.unlink()
    params = dict(m['stages']['train']['parameters'], artifacts=str(tmp_path/'again'), study_path=str(tmp_path/'again.db'))
    import papermill as pm
    from mlnb.core import read_scraps
    pm.execute_notebook(str(ROOT/'nbs'/'40_train.ipynb'), str(tmp_path/'again.ipynb'), parameters=params, kernel_name='python3', cwd=str(ROOT), progress_bar=False)
    again = read_scraps(tmp_path/'again.ipynb')
    assert again['threshold'] == g['threshold'] and again['selected'] == g['selected']
