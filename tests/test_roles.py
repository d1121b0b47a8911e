"Column roles are decided once, by prepare on the whole table, and used as they are: `mlnb new`'s comments are what features does."
import json, re
import numpy as np, pandas as pd, pytest, yaml
from mlnb.roles import infer_role, infer_roles
from conftest import mlnb, write_params

def test_a_row_number_is_an_id_in_any_order_and_by_its_name():
    rng = np.random.default_rng(0); n = 400
    df = pd.DataFrame({'rownames': np.arange(1, n + 1), 'shuffled': rng.permutation(n) + 1, 'Unnamed: 0': rng.permutation(n),
                       'order_id': rng.integers(0, 50, n), 'x': rng.normal(size=n), 'code': rng.integers(1, 5, n)})
    roles = dict(infer_roles(df)[['column', 'role']].values)
    assert roles == {'rownames': 'id', 'shuffled': 'id', 'Unnamed: 0': 'id', 'order_id': 'id', 'x': 'numeric', 'code': 'categorical'}
    assert infer_roles(df, roles={'order_id': 'categorical'}).set_index('column').loc['order_id', 'role'] == 'categorical'   # the user may say otherwise
    # what features used to see: the shuffled training rows of a row-number column, no longer counting up
    assert infer_role(df['rownames'].sample(frac=0.8, random_state=0))[0] == 'id'

def comment_roles(text: str) -> dict:
    "The roles `mlnb new` wrote as comments: `#   column   role   reason`."
    return {m.group(1).strip(): m.group(2) for m in re.finditer(r'^#   (.+?)\s{2,}(numeric|categorical|text|datetime|id)\s', text, re.M)}

@pytest.mark.slow
def test_a_table_sorted_by_its_target_with_row_numbers_is_not_learned_from_them(tmp_path):
    "The issue's leaky table: sorted by the target, a row number first. mlnb new calls it an id and so does the run; R² stays honest."
    from sklearn.datasets import load_diabetes
    d = load_diabetes(as_frame=True).frame.sort_values('target', kind='stable').reset_index(drop=True)
    rng = np.random.default_rng(1)
    d.insert(0, 'rownames', np.arange(1, len(d) + 1))            # counts up with the target
    d.insert(1, 'row', rng.permutation(len(d)))                  # a key in no particular order
    d.to_csv(tmp_path/'diabetes.csv', index=False)
    project = tmp_path/'project'; project.mkdir(); (project/'settings.ini').write_text('[DEFAULT]\n')
    r = mlnb('new', 'diab', '--data', tmp_path/'diabetes.csv', '--target', 'target', cwd=project)
    assert r.returncode == 0, r.stderr
    text = (project/'params'/'diab.yaml').read_text(); said = comment_roles(text)
    assert said['rownames'] == 'id' and said['row'] == 'id' and said['bmi'] == 'numeric', said
    p = yaml.safe_load(text); p['stages']['deploy']['params']['registry'] = str(tmp_path/'registry')
    r = mlnb('run', write_params(tmp_path/'d.yaml', p), '--runs-dir', tmp_path/'runs')
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads(next((tmp_path/'runs').glob('*/run.json')).read_text())
    g = {s: m['stages'][s]['glued'] for s in ('prepare', 'features', 'evaluate')}
    assert g['prepare']['roles'] == said                          # one decision: the comments are what the run did
    assert g['features']['roles'] == said and sorted(g['features']['dropped']) == ['row', 'rownames']
    assert 0.2 < g['evaluate']['r2'] < 0.7, g['evaluate']['r2']    # diabetes' honest R² (about 0.45), not the 0.99 a row number gives
