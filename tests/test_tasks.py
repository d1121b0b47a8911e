"Any task on any table, end to end: a multiclass model of review text and a regression of house values run from their parameter files through a real server; `mlnb new` on a table it has never seen; role inference and splits."
import json, os, time
import numpy as np, pandas as pd, pytest, yaml
from mlnb.features import infer_roles
from mlnb.prepare import split
from mlnb.registry import Registry
from conftest import ROOT, mlnb, write_params
from test_serve import KEY, Server

def small(name, rows, d, **deploy):
    "The example parameter file `name`, on a seeded sample of `rows` rows, registering into `d/registry`."
    p = yaml.safe_load((ROOT/'params'/f'{name}.yaml').read_text())
    p['stages']['ingest']['params']['sample_rows'] = rows
    p['stages']['deploy']['params'].update(registry=str(d/'registry'), **deploy)
    p['stages']['explain']['params'].update(sample_size=30, local_rows=[0])
    p['stages']['train']['params']['cv_folds'] = 2
    return write_params(d/f'{name}.yaml', p)

def run(params, d):
    r = mlnb('run', params, '--runs-dir', d/'runs')
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(max((d/'runs').glob('*/run.json'), key=lambda f: f.stat().st_mtime_ns).read_text())

@pytest.mark.slow
def test_review_text_multiclass_end_to_end_through_serve(tmp_path):
    m = run(small('reviews', 4000, tmp_path, minimums={}), tmp_path)
    g = {s: v['glued'] for s, v in m['stages'].items()}
    assert g['prepare']['task'] == 'multiclass' and g['prepare']['classes'] == ['negative', 'neutral', 'positive']
    assert g['features']['roles']['Review Text'] == 'text' and 'Rating' not in g['features']['roles']     # the target's source left the inputs
    assert g['evaluate']['f1_macro'] > 0.45 and set(g['evaluate']['metrics']) >= {'accuracy', 'balanced_accuracy', 'f1_macro', 'f1_weighted', 'log_loss'}
    mv = Registry(tmp_path/'registry').load('review-sentiment')
    assert mv.task == {'task': 'multiclass', 'target': 'sentiment', 'classes': ['negative', 'neutral', 'positive'], 'positive': None}
    s = Server(tmp_path/'registry', tmp_path/'p.jsonl', '--model', 'review-sentiment')
    try:
        st, r = s.call('POST', '/predict', {'Title': 'Love it', 'Review Text': 'Beautiful dress, fits perfectly and the fabric is soft. I love it!'})
        assert st == 200 and r['predictions'] == ['positive'] and set(r['probabilities'][0]) == {'negative', 'neutral', 'positive'}
        st, r = s.call('POST', '/predict', {'Title': 'Returned', 'Review Text': 'Cheap fabric, terrible fit, it ripped after one wash. Returned it.'})
        assert st == 200 and r['predictions'] == ['negative'] and abs(sum(r['probabilities'][0].values()) - 1) < 1e-9
    finally: s.stop()

@pytest.mark.slow
def test_house_value_regression_end_to_end_through_serve(tmp_path):
    m = run(small('housing', 3000, tmp_path, minimums={}), tmp_path)
    g = {s: v['glued'] for s, v in m['stages'].items()}
    assert g['prepare']['task'] == 'regression' and g['prepare']['split'] == 'random' and g['explain']['output_scale'] == 'target units'
    assert g['evaluate']['r2'] > 0.6 and g['deploy']['gate_metric'] == 'r2'
    mv = Registry(tmp_path/'registry').load('california-housing')
    house = mv.reference().drop(columns=['MedHouseVal', '_prediction']).iloc[0].to_dict()
    s = Server(tmp_path/'registry', tmp_path/'p.jsonl', '--model', 'california-housing')
    try:
        st, r = s.call('POST', '/predict', house)
        assert st == 200 and isinstance(r['predictions'][0], float) and 'probabilities' not in r
        assert abs(r['predictions'][0] - mv.pipeline.predict(pd.DataFrame([house]))[0]) < 1e-6
    finally: s.stop()

@pytest.mark.slow
@pytest.mark.parametrize('step', [dict(select='kbest', select_k=4), dict(reduce='pca', reduce_components=3)])
def test_selection_and_reduction_run_through_explain_and_the_registered_model(tmp_path, step):
    p = yaml.safe_load(small('housing', 1500, tmp_path, minimums={}).read_text())
    p['stages']['features']['params'] = step
    m = run(write_params(tmp_path/'h.yaml', p), tmp_path)
    g = {s: v['glued'] for s, v in m['stages'].items()}
    assert g['features']['n_features'] == step.get('select_k', step.get('reduce_components'))
    imp = [r['feature'] for r in g['explain']['top_features']]
    assert set(imp) <= set(g['features']['inputs'])          # explained per input column either way
    if 'reduce' in step: assert g['explain']['explainer'] == 'permutation' and len(imp) == 8   # the Pipeline over its 8 columns
    else: assert g['explain']['explainer'] == 'tree' and 1 <= len(imp) <= 4                  # the model over the 4 kept features
    mv = Registry(tmp_path/'registry').load('california-housing')
    assert [n for n, _ in mv.pipeline.steps] == ['markers', 'prep', *step.keys() - {'select_k', 'reduce_components'}, 'model']
    X = mv.reference().drop(columns=['MedHouseVal', '_prediction']).head(5)
    assert np.isfinite(mv.pipeline.predict(X)).all()

@pytest.mark.slow
def test_mlnb_new_then_run_on_a_table_it_has_not_seen(tmp_path):
    rng = np.random.default_rng(7); n = 400
    words = ['great', 'slow', 'friendly', 'late', 'broken', 'perfect', 'cold', 'fresh', 'noisy', 'clean']
    df = pd.DataFrame({'ticket_id': np.arange(1000, 1000 + n), 'opened': pd.date_range('2025-01-01', periods=n, freq='7h').astype(str),
                       'comment': [' '.join(rng.choice(words, 8)) + f' visit {i}' for i in range(n)],
                       'branch': rng.choice(['north', 'south', 'east'], n), 'visits': rng.integers(1, 40, n)})
    df['spend'] = (df['visits'] * 3.5 + df['branch'].map({'north': 20, 'south': 0, 'east': 10}) + rng.normal(0, 4, n)).round(2)
    df.to_csv(tmp_path/'tickets.csv', index=False)
    project = tmp_path/'project'; project.mkdir(); (project/'settings.ini').write_text('[DEFAULT]\n')   # `mlnb new` writes params/ of the project it runs in: not the checkout's
    r = mlnb('new', 'tickets-pytest', '--data', tmp_path/'tickets.csv', '--target', 'spend', cwd=project)
    dest = project/'params'/'tickets-pytest.yaml'
    assert r.returncode == 0 and 'wrote' in r.stdout, r.stderr
    text = dest.read_text(); p = yaml.safe_load(text)
    assert p['shared']['task'] == 'regression' and p['stages']['validate']['params']['schema']['branch']['isin'] == ['east', 'north', 'south']
    assert p['stages']['ingest']['params']['path'] == str(tmp_path/'tickets.csv')   # outside that project: absolute, so it runs from anywhere
    for col, role in [('ticket_id', 'id'), ('opened', 'datetime'), ('comment', 'text'), ('branch', 'categorical'), ('visits', 'numeric')]:
        assert any(l.split()[1:3] == [col, role] for l in text.splitlines() if l.startswith('#   ')), (col, role)
    assert mlnb('new', 'tickets-pytest', '--data', tmp_path/'tickets.csv', '--target', 'spend', cwd=project).returncode == 2   # no overwrite
    assert not (ROOT/'params'/'tickets-pytest.yaml').exists()
    p['stages']['deploy']['params']['registry'] = str(tmp_path/'registry')       # keep the project's registry clean
    m = run(write_params(tmp_path/'t.yaml', p), tmp_path)
    assert m['stages']['evaluate']['glued']['r2'] > 0.8 and m['stages']['features']['glued']['dropped'] == ['ticket_id']
    assert p['stages']['deploy']['params']['minimums'] == {'r2': 0.05}   # the mean's CV R² is about 0: a version must beat it by 0.05
    assert m['stages']['deploy']['glued']['promoted'] is True

def test_mlnb_new_gate_stops_a_model_that_cannot_beat_guessing(tmp_path):
    "A target unrelated to every column: `mlnb new`'s minimum (a trivial model's CV score + 0.05) keeps the first version out of production."
    rng = np.random.default_rng(3); n = 600
    pd.DataFrame({'a': rng.normal(size=n), 'b': rng.choice(['x', 'y', 'z'], n), 'y': rng.choice(['no', 'yes'], n)}).to_csv(tmp_path/'noise.csv', index=False)
    project = tmp_path/'project'; project.mkdir(); (project/'settings.ini').write_text('[DEFAULT]\n')
    assert mlnb('new', 'noise', '--data', tmp_path/'noise.csv', '--target', 'y', cwd=project).returncode == 0
    p = yaml.safe_load((project/'params'/'noise.yaml').read_text())
    assert p['stages']['deploy']['params']['minimums'] == {'roc_auc': 0.55}
    p['stages']['deploy']['params']['registry'] = str(tmp_path/'registry')
    m = run(write_params(tmp_path/'n.yaml', p), tmp_path)
    assert m['stages']['deploy']['glued']['promoted'] is False and 'roc_auc' in ' '.join(m['stages']['deploy']['glued']['gate_reasons'])

def test_role_inference():
    rng = np.random.default_rng(0); n = 80
    df = pd.DataFrame({'row': np.arange(n), 'Customer ID': rng.integers(0, 20, n), 'when': pd.date_range('2024-01-01', periods=n).astype(str),
                       'review': [f'the fit was lovely and the colour true to the photos {i}' for i in range(n)],
                       'grade': rng.integers(1, 5, n), 'price': rng.normal(40, 9, n), 'city': rng.choice(['Lyon', 'Nice'], n)})
    roles = dict(infer_roles(df)[['column', 'role']].values)
    assert roles == {'row': 'id', 'Customer ID': 'id', 'when': 'datetime', 'review': 'text', 'grade': 'categorical', 'price': 'numeric', 'city': 'categorical'}
    assert dict(infer_roles(df, roles={'grade': 'numeric'}, drop=['city'])[['column', 'role']].values)['city'] == 'id'

def test_a_regression_target_is_never_stratified():
    df = pd.DataFrame({'x': range(50), 'y': [0.5] + list(np.linspace(1, 100, 49))})   # a value seen once would break stratification
    tr, te = split(df, 'y', 0.2, 0, 'regression')
    assert len(tr) == 40 and len(te) == 10
    with pytest.raises(Exception, match="has a single row"): split(df.assign(y=df['y'].astype(str)), 'y', 0.2, 0, 'multiclass')
