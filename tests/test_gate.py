"Deploy's gate against production on the same test rows: a paired bootstrap interval of the difference, metric direction, slices, parameters; and end to end through two runs into one registry."
import json
import nbformat, numpy as np, pandas as pd, pytest
from mlnb.core import MlnbError
from mlnb.deploy import gate_settings, production_reasons, slice_differences
from mlnb.evaluate import model_output, paired_difference, slice_labels
from mlnb.ingest import demo_data
from mlnb.prepare import normalise_missing
from mlnb.registry import Registry, gate
from mlnb.train import make_pipeline
from conftest import mlnb, small_params, write_params

B = dict(task='binary', target='income', classes=['<=50K', '>50K'], positive='>50K')

@pytest.fixture(scope='module')
def split():
    d = normalise_missing(demo_data(3000, seed=11), ['?']); X, y = d.drop(columns=['income']), d['income']
    return X[:2000], y[:2000], X[2000:], y[2000:]

def forest(split, seed, rows=None, **params):
    Xtr, ytr, Xte, _ = split; rows = rows or len(Xtr)
    pipe = make_pipeline(Xtr[:rows], 'random_forest', dict(n_estimators=60, **params), seed=seed).fit(Xtr[:rows], ytr[:rows])
    return model_output(pipe, Xte, B)

def test_paired_gate_refuses_a_candidate_better_only_by_noise(split):
    *_, y = split
    outs = {s: forest(split, s) for s in (1, 2, 3, 4)}            # the same forest on the same rows, four seeds
    prod_seed, new_seed = min(((a, b) for a in outs for b in outs if a != b), key=lambda ab: -paired_difference(y, outs[ab[1]], outs[ab[0]], B, 'roc_auc', n_resamples=10)['difference'])
    c = paired_difference(y, outs[new_seed], outs[prod_seed], B, 'roc_auc', n_resamples=2000, seed=42)
    assert c['difference'] > 0 and c['low'] < 0 < c['high'], c    # better by its point value, not beyond noise
    point = gate({'roc_auc': c['a']}, {}, {'roc_auc': c['b']}, 'roc_auc', tolerance=0)
    assert point['passed']                                        # the old comparison of two numbers would promote it
    r = production_reasons(c, gate_settings({'tolerance': 0}, 0.01))
    assert len(r) == 1 and 'its lower end is not above -0' in r[0]  # the paired interval does not
    assert production_reasons(c, gate_settings({'tolerance': 0.02}, 0.01)) == []   # and with room for noise, it is not refused either

def test_paired_gate_promotes_a_clearly_better_candidate(split):
    *_, y = split
    c = paired_difference(y, forest(split, 1), forest(split, 1, rows=150, max_depth=2), B, 'roc_auc', seed=42)
    assert c['low'] > 0 and production_reasons(c, gate_settings({'tolerance': 0}, 0.01)) == []

def test_same_resamples_for_both_and_the_metrics_direction():
    rng = np.random.default_rng(3); y = pd.Series(rng.normal(10, 2, 800)); good = y + rng.normal(0, 1, 800); bad = y + rng.normal(0, 1.5, 800)
    R = dict(task='regression')
    for metric in ('rmse', 'mae', 'r2'):
        c = paired_difference(y, good, bad, R, metric, seed=0)
        assert c['difference'] > 0 and c['low'] > 0, (metric, c)  # rmse and mae flip: positive means the candidate is better
    same = paired_difference(y, good, good.copy(), R, 'rmse', seed=0)
    assert (same['difference'], same['low'], same['high']) == (0, 0, 0)   # identical models: the same rows drawn for both

def test_slice_tolerance_catches_a_group_made_worse(split):
    Xtr, ytr, Xte, y = split
    prod = forest(split, 1); lab = slice_labels(Xte, ['gender'])
    new = np.where(lab.gender.eq('Female').to_numpy(), 0.5, prod)   # as good elsewhere, useless for women
    sd = slice_differences(y, new, prod, B, lab, 'roc_auc', n_resamples=300)
    assert sd.iloc[0][['column', 'slice']].tolist() == ['gender', 'Female'] and sd.iloc[0].difference < -0.2
    r = production_reasons(None, gate_settings({}, 0.01), sd, slice_tolerance=0.02, min_rows=100)
    assert len(r) == 1 and r[0].startswith('slice gender = Female (n=')
    assert production_reasons(None, gate_settings({}, 0.01), sd, slice_tolerance=0.02, min_rows=sd.n.max() + 1) == []   # slices below min_rows are not judged
    assert production_reasons(None, gate_settings({}, 0.01), sd, slice_tolerance=None) == []                          # no slice_tolerance: not checked

def test_gate_parameters():
    assert gate_settings({}, 0.03) == dict(tolerance=0.03, paired_ci=True)        # the old `tolerance` keeps working
    assert gate_settings({'tolerance': 0.0, 'paired_ci': False}, 0.03) == dict(tolerance=0.0, paired_ci=False)
    for bad, msg in [({'tolerence': 0.01}, r"unknown key\(s\) \['tolerence'\]"), ({'tolerance': -1}, 'at least 0'), ({'tolerance': True}, 'at least 0'),
                     ({'paired_ci': 'yes'}, 'paired_ci must be true or false'), ([0.01], 'must be a mapping')]:
        with pytest.raises(MlnbError, match=msg): gate_settings(bad, 0.01)

@pytest.mark.slow
def test_two_runs_gate_on_the_same_rows(tmp_path):
    reg_dir = tmp_path/'registry'
    def run(name, **deploy):
        p = small_params(deploy={'registry': str(reg_dir), 'minimums': {}} | deploy, evaluate={'slices': ['gender', 'age']})
        r = mlnb('run', write_params(tmp_path/f'{name}.yaml', p), '--runs-dir', tmp_path/name)
        assert r.returncode == 0, r.stdout + r.stderr
        m = json.loads(next((tmp_path/name).glob('*/run.json')).read_text())
        return m, next((tmp_path/name).glob('*/08_deploy.ipynb'))
    m1, _ = run('first')
    d1 = m1['stages']['deploy']['glued']
    assert d1['promoted'] and d1['gate_how'].startswith('minimums only') and 'vs_production' not in d1
    ev = m1['stages']['evaluate']['glued']
    mv = Registry(reg_dir).load('adult-income')
    assert mv.meta['threshold'] == ev['threshold'] and f"| roc_auc | {ev['roc_auc']:.4f} | {ev['roc_auc_ci'][0]:.4f} to {ev['roc_auc_ci'][1]:.4f} |" in mv.card
    # the same parameters again: the same model, scored with production on the same rows; with tolerance 0 it must be better beyond noise
    m2, nb = run('second', vs_production={'tolerance': 0.0, 'paired_ci': True}, slice_tolerance=0.05)
    d2 = m2['stages']['deploy']['glued']
    c = d2['vs_production']
    assert c['production_version'] == 1 and c['difference'] == 0 and c['low'] == c['high'] == 0
    assert not d2['promoted'] and any('its lower end is not above -0' in r for r in d2['gate_reasons'])
    assert {r['column'] for r in d2['slice_differences']} == {'gender', 'age'}
    text = nbformat.read(nb, as_version=4)
    assert 'Against production, on the same rows' in str(text) and 'failed the gate' in str(text)
    assert Registry(reg_dir).resolve('adult-income') == ('adult-income', 1)
