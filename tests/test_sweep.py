"A sweep through `mlnb run`: one run per combination, shared stages executed once, and `mlnb compare`."
import json
import pytest
from conftest import mlnb, small_params, write_params

@pytest.mark.slow
def test_a_3x2_sweep_runs_shared_stages_once_and_compares(tmp_path):
    p = small_params()
    p['stages'] = {k: v for k, v in p['stages'].items() if k in ('ingest', 'validate', 'prepare', 'features', 'train', 'evaluate')}
    p['stages']['evaluate']['params'] = {'slices': []}
    p['sweep'] = {'shared.model': ['linear', 'naive_bayes', 'random_forest'], 'train.cv_folds': [2, 3]}
    r = mlnb('run', write_params(tmp_path/'sweep.yaml', p), '--runs-dir', tmp_path/'runs')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    mans = [json.loads(f.read_text()) for f in (tmp_path/'runs').glob('*/run.json')]
    mans = [m for m in mans if not m.get('partial')]                         # the shared stages ran once, in a partial run of their own
    assert len(mans) == 6 and len({m['params']['sweep_run']['id'] for m in mans}) == 1
    for stage in ('ingest', 'validate', 'prepare'):                          # executed once, cached in the five other runs
        assert [m['stages'][stage]['status'] for m in mans] == ['cached'] * 6, stage
    ran_features = [m for m in mans if m['stages']['features']['status'] == 'ok']
    keys = {m['params']['shared']['model']: set() for m in mans}
    for m in mans: keys[m['params']['shared']['model']].add(m['stages']['features']['key'])
    assert all(len(k) == 1 for k in keys.values())                           # features depends on the model, not on cv_folds: one key per model
    assert len(ran_features) == 3, [(m['params']['shared']['model'], m['stages']['features']['status']) for m in mans]  # and the two runs of a model
                                                                             # never execute it at once: the second waits while another can start
    sid = mans[0]['params']['sweep_run']['id']
    r = mlnb('compare', sid, '--runs-dir', tmp_path/'runs')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ['run', 'shared.model', 'train.cv_folds', 'roc_auc']
    aucs = [float(l.split()[3]) for l in lines[1:7]]
    assert aucs == sorted(aucs, reverse=True) and len(aucs) == 6              # best first
    assert aucs[0] == round(max(m['stages']['evaluate']['glued']['roc_auc'] for m in mans), 6)   # cv_folds changes only the CV scores: ties
    assert (tmp_path/'runs'/'_sweeps'/sid/'compare.html').exists()
