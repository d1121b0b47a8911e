"""mlnb's default pipeline against a plain baseline and FLAML on real tables (issue 19, item 7).

    python bench/tables.py [--tables wine,iris] [--quick] [--rows N] [--out bench/tables.md] [--work DIR] [--live] [--list]

Per table: the table is written as a CSV into a temporary project folder (a `settings.ini` and the checkout's `nbs/`
and `mlnb/` as committed, so edits in progress in the checkout do not reach the runs; `--live` links the working
tree's `nbs/` instead), then `mlnb new NAME --data data/NAME.csv --target COL` and `mlnb run` of that file as written,
with only the registry path set (into the project), `--jobs 1 --no-cache`. On the train and test rows of that run
(prepare's `train` and `test` artifacts, found through run.json), two other models, scored with the task's gate
metric (ROC-AUC binary, macro F1 multiclass, R² regression); mlnb's figure is evaluate's glued metric:
  baseline: HistGradientBoosting with native categories (categorical_features='from_dtype'), or, when the table
            has a text column, TF-IDF of each text column + one-hot categories + scaled numbers into
            LogisticRegression (Ridge for regression); default settings, class_weight='balanced' for multiclass;
  FLAML:    flaml.AutoML with time_budget = mlnb's run seconds, n_jobs=1, the task's metric, on the baseline's
            input frame (on text tables the baseline's sparse TF-IDF/one-hot matrix: FLAML treats a string
            column as one category).
The columns this script added to make a table messy (row numbers, ids) are left out of the baseline's and FLAML's
inputs; mlnb gets the whole file and has to find them. Everything runs at one thread (OMP_NUM_THREADS=1, also for
the mlnb subprocesses). `--quick` samples 600 rows per table (`--rows N` any other size); `--list` shows the tables.
For an hgb run the report also refits the baseline's HGB with mlnb's model settings, with mlnb's categorical roles, and
with both (close to mlnb's own figure), to show where a gap comes from. Writes the markdown report (with the machine)
to --out and the figures as JSON beside it; the project folder (executed notebooks under runs/) is kept.
"""
import argparse, json, os, platform, subprocess, sys, tempfile, time
from pathlib import Path

for v in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'): os.environ[v] = '1'
import numpy as np, pandas as pd, yaml

ROOT = Path(__file__).resolve().parents[1]
MLNB = str(Path(sys.executable).parent/'mlnb')
METRIC = {'binary': 'roc_auc', 'multiclass': 'f1_macro', 'regression': 'r2'}          # evaluate's glued key
FLAML_METRIC = {'binary': 'roc_auc', 'multiclass': 'macro_f1', 'regression': 'r2'}

def data_file(name):
    "A file of the checkout's data/ (the shared data), else /work/shared/data."
    return next(p for p in (ROOT/'data'/name, Path('/work/shared/data')/name) if p.exists())

def _sk(loader, **kw):
    import sklearn.datasets as skd
    return getattr(skd, loader)(as_frame=True, **kw)

def adult():
    return pd.read_csv(data_file('adult.csv.gz'))

def reviews():
    df = pd.read_csv(data_file('womens_clothing_reviews.csv.gz')).drop(columns='Recommended IND')
    return df.reset_index().rename(columns={'index': 'Unnamed: 0'})

def housing():
    return pd.read_csv(data_file('california_housing.csv.gz'))

def wine():
    b = _sk('load_wine'); f = b.frame.rename(columns={'target': 'cultivar'})
    f['cultivar'] += 1
    return f[['cultivar', *b.feature_names]].sort_values('cultivar', kind='stable').reset_index(drop=True)

def breast_cancer():
    b = _sk('load_breast_cancer'); f = b.frame.drop(columns='target')
    f.insert(0, 'id', np.random.default_rng(569).choice(np.arange(8_000, 99_000_000), len(f), replace=False))
    f.insert(1, 'diagnosis', np.where(b.target == 0, 'M', 'B'))
    return f

def diabetes():
    f = _sk('load_diabetes', scaled=False).frame.rename(columns={'target': 'progression'})
    f.insert(0, 'patient', [f'P{i:04d}' for i in np.random.default_rng(442).permutation(len(f)) + 1])
    return f

def digits():
    f = _sk('load_digits').frame.rename(columns={'target': 'digit'})
    f.insert(0, 'row', np.arange(1, len(f) + 1))
    return f

def iris():
    b = _sk('load_iris'); f = b.frame.drop(columns='target')
    f.columns = ['SepalLengthCm', 'SepalWidthCm', 'PetalLengthCm', 'PetalWidthCm']
    f.insert(0, 'Id', np.arange(1, len(f) + 1))
    f['Species'] = ['Iris-' + b.target_names[t] for t in b.target]
    return f

def penguins():
    import palmerpenguins
    return palmerpenguins.load_penguins()

def _vega(file):
    "A file of vega_datasets' local data (in its wheel), read with pandas: dates stay strings, as in the file."
    from importlib.resources import files
    f = files('vega_datasets')/'_data'/file
    return pd.read_json(f) if file.endswith('.json') else pd.read_csv(f)

def seattle_weather():
    return _vega('seattle-weather.csv')

def cars():
    return _vega('cars.json')

def _sm(name):
    import importlib, warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return importlib.import_module(f'statsmodels.datasets.{name}').load_pandas().data

def anes96():
    f = _sm('anes96'); f['vote'] = f['vote'].map({0.0: 'Clinton', 1.0: 'Dole'})
    return f

def fair():
    f = _sm('fair'); f['had_affair'] = np.where(f.pop('affairs') > 0, 'yes', 'no')
    return f

def randhie():
    return _sm('randhie')

# name: (maker, target, task, columns added to make it messy (left out of baseline and FLAML), text columns,
#        date columns, source and licence, what was done to it)
TABLES = {
    'adult': (adult, 'income', 'binary', [], [], [],
              "UCI Adult (Becker & Kohavi 1996), CC BY 4.0; the checkout's data/adult.csv.gz",
              "as shipped: '?' for missing workclass, occupation and native-country, duplicate rows kept"),
    'reviews': (reviews, 'Rating', 'multiclass', ['Unnamed: 0'], ['Title', 'Review Text'], [],
                "Women's e-commerce clothing reviews (Nick Brooks, Kaggle 2018), CC0; data/womens_clothing_reviews.csv.gz",
                "the 1-5 Rating as the target; `Recommended IND` (a near copy of the rating) removed; the row-number "
                "column of the Kaggle file put back (`Unnamed: 0`); missing titles and texts as shipped"),
    'housing': (housing, 'MedHouseVal', 'regression', [], [], [],
                "California housing (Pace & Barry 1997, StatLib), public; data/california_housing.csv.gz",
                "as shipped (target capped at 5.00001)"),
    'wine': (wine, 'cultivar', 'multiclass', [], [], [],
             "UCI Wine (Forina et al.), CC BY 4.0; scikit-learn's load_wine",
             "laid out as UCI's wine.data: the class (1-3) as the first column, rows sorted by it"),
    'breast_cancer': (breast_cancer, 'diagnosis', 'binary', ['id'], [], [],
                      "UCI Breast Cancer Wisconsin (Diagnostic) (Wolberg et al.), CC BY 4.0; scikit-learn's load_breast_cancer",
                      "laid out as UCI's wdbc.data: a random 4-8 digit patient id first, then diagnosis as M/B"),
    'diabetes': (diabetes, 'progression', 'regression', ['patient'], [], [],
                 "Diabetes (Efron et al. 2004, 'Least Angle Regression'); scikit-learn's load_diabetes(scaled=False), BSD-3",
                 "raw (unscaled) values, sex coded 1/2; a string patient id ('P0173') in shuffled order added"),
    'digits': (digits, 'digit', 'multiclass', ['row'], [], [],
               "UCI Optical Recognition of Handwritten Digits (Alpaydin & Kaynak), CC BY 4.0; scikit-learn's load_digits",
               "64 pixel counts (0-16); a row number 1..n added"),
    'iris': (iris, 'Species', 'multiclass', ['Id'], [], [],
             "Fisher's Iris (UCI), CC BY 4.0; scikit-learn's load_iris",
             "laid out as the well-known Kaggle Iris.csv: an Id 1..150, rows sorted by species, 'Iris-setosa' labels"),
    'penguins': (penguins, 'species', 'multiclass', [], [], [],
                 "Palmer penguins (Gorman, Williams & Fraser 2014), CC0; the palmerpenguins package's bundled CSV",
                 "as shipped: missing measurements and sex"),
    'seattle_weather': (seattle_weather, 'weather', 'multiclass', [], [], ['date'],
                        "Seattle weather 2012-2015 (NOAA), public domain; vega_datasets' local seattle-weather.csv",
                        "as shipped: dates written 2012/01/01, 5 imbalanced classes (snow 1.6%)"),
    'cars': (cars, 'Miles_per_Gallon', 'regression', [], [], ['Year'],
             "Auto MPG (Henderson & Velleman 1981, StatLib / UCI); vega_datasets' local cars.json",
             "as shipped: 8 missing targets, 6 missing Horsepower, the car's Name, Year as a date 1970-01-01"),
    'anes96': (anes96, 'vote', 'binary', [], [], [],
               "American National Election Study 1996, public domain; statsmodels.datasets.anes96",
               "vote 0/1 written as Clinton/Dole; codes (PID, educ, income) as the floats statsmodels ships"),
    'fair': (fair, 'had_affair', 'binary', [], [], [],
             "Fair (1978) affairs survey (Redbook 1974); statsmodels.datasets.fair ('included with permission of the author')",
             "target yes/no from affairs > 0 (statsmodels' logit example), affairs itself removed; codes as floats"),
    'randhie': (randhie, 'mdvis', 'regression', [], [], [],
                "RAND Health Insurance Experiment, public domain; statsmodels.datasets.randhie",
                "as shipped; the target is a count of doctor visits (noisy: a low R² is expected)"),
}

def make_table(name, rows=0, seed=0):
    "The table `name` as written for mlnb: its maker's frame, sampled to `rows` rows (seeded, order kept) when given."
    df = TABLES[name][0]()
    return df.sample(rows, random_state=seed).sort_index() if 0 < rows < len(df) else df

def commit() -> str:
    return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()

def project(work: Path, live=False) -> Path:
    """An mlnb project in `work`: a settings.ini and the notebooks and package as committed (HEAD: other people's
    edits in progress in the checkout do not reach the runs), or with `live` a link to the checkout's nbs/."""
    work.mkdir(parents=True, exist_ok=True); (work/'settings.ini').write_text('[DEFAULT]\n')
    if (work/'nbs').exists(): return work
    if live: (work/'nbs').symlink_to(ROOT/'nbs'); return work
    tar = subprocess.run(['git', 'archive', 'HEAD', 'nbs', 'mlnb'], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(['tar', '-x', '-C', str(work)], input=tar, check=True)
    return work

def run_mlnb(proj: Path, name: str, df: pd.DataFrame, target: str) -> dict:
    "`mlnb new` + `mlnb run` of `df` in the project `proj`; the run's manifest, with `run_dir`."
    (proj/'data').mkdir(exist_ok=True); df.to_csv(proj/'data'/f'{name}.csv', index=False)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    if (proj/'mlnb').is_dir(): env['PYTHONPATH'] = str(proj)   # the committed package beside the committed notebooks
    sh = lambda *a: subprocess.run([MLNB, *map(str, a)], cwd=proj, env=env, capture_output=True, text=True, timeout=3600)
    r = sh('new', name, '--data', f'data/{name}.csv', '--target', target, '--force')
    if r.returncode: raise RuntimeError(f'mlnb new {name} failed ({r.returncode}): {r.stderr[-1500:]}')
    p = yaml.safe_load((proj/'params'/f'{name}.yaml').read_text())
    p['stages']['deploy'].setdefault('params', {})['registry'] = str(proj/'outputs'/'registry')
    (proj/'params'/f'{name}.run.yaml').write_text(yaml.safe_dump(p, sort_keys=False))
    runs = proj/'runs'/name
    r = sh('run', f'params/{name}.run.yaml', '--runs-dir', runs, '--jobs', '1', '--no-cache')
    found = sorted(runs.glob('*/run.json'), key=lambda f: f.stat().st_mtime_ns)
    if r.returncode or not found:
        raise RuntimeError(f'mlnb run {name} failed ({r.returncode}):\n{r.stdout[-2500:]}{r.stderr[-1500:]}')
    return {**json.loads(found[-1].read_text()), 'run_dir': str(found[-1].parent)}

def run_frames(m: dict):
    "prepare's train and test rows of the run `m` and the task, classes and positive class it glued."
    pr = m['stages']['prepare']; d = Path(m['run_dir'])
    train, test = (pd.read_parquet(d/pr['artifacts'][k]['path']) for k in ('train', 'test'))
    return train, test, pr['glued']

def date_parts(s: pd.Series) -> pd.DataFrame:
    "A date column as numbers: days since 1970, year, month, day of year, day of week."
    t = pd.to_datetime(s, errors='coerce')
    return pd.DataFrame({f'{s.name}_days': (t - pd.Timestamp('1970-01-01')).dt.days, f'{s.name}_year': t.dt.year,
                         f'{s.name}_month': t.dt.month, f'{s.name}_dayofyear': t.dt.day_of_year, f'{s.name}_dayofweek': t.dt.day_of_week})

def inputs(train, test, target, drop=(), text=(), dates=(), max_levels=250):
    "Baseline input frames: mess columns dropped, dates as numbers, text as strings, other strings as categories (train's `max_levels` most frequent)."
    out = []
    for df in (train, test):
        X = df.drop(columns=[target, *[c for c in drop if c in df]])
        for c in dates: X = pd.concat([X.drop(columns=c), date_parts(X[c]).set_index(X.index)], axis=1)
        out.append(X)
    Xtr, Xte = out
    for c in Xtr.columns:
        if c in text: Xtr[c], Xte[c] = Xtr[c].fillna('').astype(str), Xte[c].fillna('').astype(str)
        elif not pd.api.types.is_numeric_dtype(Xtr[c]) and not pd.api.types.is_bool_dtype(Xtr[c]):
            dt = pd.CategoricalDtype(Xtr[c].astype(object).dropna().astype(str).value_counts().index[:max_levels])
            Xtr[c], Xte[c] = (s.astype(object).where(s.isna(), s.astype(str)).pipe(lambda v: v.where(v.isin(dt.categories))).astype(dt)
                              for s in (Xtr[c], Xte[c]))
    return Xtr, Xte

def text_pipeline(X, text, task):
    "TF-IDF of each text column, one-hot categories, scaled numbers, into LogisticRegression (Ridge for regression)."
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    cats = [c for c in X if isinstance(X[c].dtype, pd.CategoricalDtype)]
    nums = [c for c in X if c not in cats and c not in text]
    prep = ColumnTransformer([*[(f'text{i}', TfidfVectorizer(), c) for i, c in enumerate(text)],
                              ('cat', make_pipeline(SimpleImputer(strategy='most_frequent'), OneHotEncoder(handle_unknown='ignore')), cats),
                              ('num', make_pipeline(SimpleImputer(), StandardScaler()), nums)])
    model = Ridge() if task == 'regression' else LogisticRegression(max_iter=1000, class_weight='balanced' if task == 'multiclass' else None)
    return prep, model

def baseline(Xtr, ytr, task, text=()):
    "The plain baseline (see the module docstring), fitted; and the fitted preprocessing of a text table (for FLAML), else None."
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    if text:
        prep, model = text_pipeline(Xtr, list(text), task)
        pipe = make_pipeline(prep, model).fit(Xtr, ytr); return pipe, pipe[0]
    if task == 'regression': model = HistGradientBoostingRegressor(categorical_features='from_dtype', random_state=0)
    else: model = HistGradientBoostingClassifier(categorical_features='from_dtype', random_state=0,
                                                 class_weight='balanced' if task == 'multiclass' else None)
    return model.fit(Xtr, ytr), None

def as_categories(Xtr, Xte, cols):
    "Numeric columns `cols` as categories (train's values), as mlnb's features stage gives them to HGB."
    Xtr, Xte = Xtr.copy(), Xte.copy()
    for c in cols:
        dt = pd.CategoricalDtype(sorted(Xtr[c].dropna().unique()))
        Xtr[c], Xte[c] = Xtr[c].astype(dt), Xte[c].where(Xte[c].isin(dt.categories)).astype(dt)
    return Xtr, Xte

def ablation(m, Xtr, ytr, Xte, yte, task, positive=None) -> dict:
    """For a run whose model is hgb without a search: the baseline's HGB with mlnb's model settings, with mlnb's
    categorical roles for numeric columns, and with both (which comes close to mlnb's own figure): where a gap comes from."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    t = m['stages']['train']['glued']
    if t.get('model') != 'hgb' or t.get('search') != 'none': return {}
    M = HistGradientBoostingRegressor if task == 'regression' else HistGradientBoostingClassifier
    base = dict(categorical_features='from_dtype', random_state=0, **({'class_weight': 'balanced'} if task == 'multiclass' else {}))
    cats = [c for c, r in m['stages']['features']['glued'].get('roles', {}).items()
            if r == 'categorical' and c in Xtr and pd.api.types.is_numeric_dtype(Xtr[c])]
    Ctr, Cte = as_categories(Xtr, Xte, cats)
    fit = lambda kw, A, B: float(score(M(**kw).fit(A, ytr), B, yte, task, positive))
    return {'mlnb_settings': fit(t['model_params'], Xtr, Xte), 'mlnb_categories': fit(base, Ctr, Cte),
            'both': fit(t['model_params'], Ctr, Cte), 'numeric_as_categories': cats}

def score(model, X, y, task, positive=None):
    "The gate metric of `task` for a fitted model: ROC-AUC (of the positive class), macro F1, or R²."
    from sklearn.metrics import f1_score, r2_score, roc_auc_score
    if task == 'regression': return r2_score(y, model.predict(X))
    if task == 'multiclass': return f1_score(y, model.predict(X), average='macro')
    classes = [str(c) for c in model.classes_]
    pos = str(positive) if str(positive) in classes else classes[1]
    return roc_auc_score(y.astype(str) == pos, model.predict_proba(X)[:, classes.index(pos)])

class Coded:
    "A classifier fitted on integer codes of the labels, answering in the labels (`classes_`, predict, predict_proba)."
    def __init__(self, model, classes): self.model, self.classes_ = model, np.asarray(classes, dtype=object)
    def predict(self, X): return self.classes_[np.asarray(self.model.predict(X)).astype(int)]
    def predict_proba(self, X): return self.model.predict_proba(X)
    def __getattr__(self, k): return getattr(self.model, k)

def flaml_fit(X, y, task, budget, seed=0):
    "flaml.AutoML on one thread with the task's metric and `budget` seconds; class labels go in as codes 0..k-1."
    import logging
    from flaml import AutoML
    logging.getLogger('flaml.automl.logger').setLevel(logging.WARNING)
    if isinstance(X, pd.DataFrame): X = X.set_axis(pd.Index(list(X.columns), dtype=object), axis=1)   # FLAML 2.3 calls np.issubdtype on pandas 3's str column index
    classes, codes = np.unique(np.asarray(y), return_inverse=True) if task != 'regression' else (None, None)
    a = AutoML()
    a.fit(X_train=X, y_train=np.asarray(y) if codes is None else codes, task='regression' if task == 'regression' else 'classification',
          metric=FLAML_METRIC[task], time_budget=budget, n_jobs=1, seed=seed, verbose=0, log_file_name='')
    return a if classes is None else Coded(a, classes)

def describe_run(m: dict) -> dict:
    "What mlnb decided on a run: columns per role, dropped columns, model and its key settings, CV score."
    g = {s: v.get('glued', {}) for s, v in m['stages'].items()}
    f, t = g['features'], g['train']
    by_role = {}
    for c, r in f.get('roles', {}).items(): by_role.setdefault(r, []).append(c)
    mp = t.get('model_params', {})
    keep = {k: mp[k] for k in ('class_weight', 'learning_rate', 'max_iter', 'max_leaf_nodes', 'early_stopping', 'C') if k in mp}
    return dict(roles={r: len(cs) for r, cs in by_role.items()}, text=by_role.get('text', []), datetime=by_role.get('datetime', []),
                categorical=by_role.get('categorical', []),
                dropped=f.get('dropped', []), model=t.get('model'), model_class=t.get('model_class'), model_params=keep,
                n_features=f.get('n_features'), search=t.get('search'),
                cv=t.get(f"cv_{t.get('selection_metric')}"), selection_metric=t.get('selection_metric'),
                rows_dropped=g['prepare'].get('rows_dropped_missing'), duplicates_dropped=g['prepare'].get('duplicates_dropped'),
                stage_seconds={s: float(v['duration_s']) for s, v in m['stages'].items()})

def bench_table(name, work: Path, rows=0, live=False) -> dict:
    "One table end to end: mlnb, the baseline and FLAML on mlnb's split; the figures and what mlnb decided."
    _, target, task, drop, text, dates, source, mess = TABLES[name]
    df = make_table(name, rows)
    res = dict(table=name, rows=len(df), columns=df.shape[1], task=task, metric=METRIC[task], source=source, mess=mess)
    m = run_mlnb(project(work, live), name.replace('_', '-'), df, target)
    train, test, info = run_frames(m)
    if info['task'] != task: res['task_note'] = f"mlnb decided {info['task']}, expected {task}"
    task = info['task']; res.update(task=task, metric=METRIC[task])
    res.update(mlnb=float(m['stages']['evaluate']['glued'][METRIC[task]]), mlnb_s=float(m['duration_s']), run_dir=m['run_dir'],
               n_train=len(train), n_test=len(test), decided=describe_run(m))
    Xtr, Xte = inputs(train, test, target, drop, text, dates)
    ytr, yte = train[target], test[target]
    if task != 'regression': ytr, yte = (pd.Series(np.asarray(y.astype(str), dtype=object), index=y.index) for y in (ytr, yte))
    t0 = time.perf_counter(); model, prep = baseline(Xtr, ytr, task, text)
    res.update(baseline=float(score(model, Xte, yte, task, info.get('positive'))), baseline_s=time.perf_counter() - t0)
    Ftr, Fte = (prep.transform(Xtr).tocsr(), prep.transform(Xte).tocsr()) if prep is not None else (Xtr, Xte)
    t0 = time.perf_counter(); a = flaml_fit(Ftr, ytr, task, res['mlnb_s'])
    res.update(flaml=float(score(a, Fte, yte, task, info.get('positive'))), flaml_s=time.perf_counter() - t0,
               flaml_model=a.best_estimator, flaml_config=a.best_config)
    res['ablation'] = ablation(m, Xtr, ytr, Xte, yte, task, info.get('positive'))
    res['best_other'] = max(res['baseline'], res['flaml']); res['gap'] = res['mlnb'] - res['best_other']
    return res

def machine() -> str:
    cpu = next((l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('model name')), platform.processor()) \
        if Path('/proc/cpuinfo').exists() else platform.processor()
    load = ', '.join(f'{x:.1f}' for x in os.getloadavg()) if hasattr(os, 'getloadavg') else '?'
    return f"{os.cpu_count()} cores (nproc), {cpu}; load average at the end {load}; Python {platform.python_version()}"

def versions() -> str:
    from importlib.metadata import version
    return ', '.join(f'{p} {version(p)}' for p in ('scikit-learn', 'flaml', 'lightgbm', 'xgboost', 'pandas', 'numpy'))

def short(names, n=8) -> str:
    return ', '.join(names[:n]) + (f' and {len(names) - n} more' if len(names) > n else '')

def markdown(results: list, failed: dict, quick: str) -> str:
    "The results as a markdown report: the table, the average, the machine, and per table what mlnb decided."
    f = lambda x: f'{x:.4f}'
    lines = ['# mlnb against a plain baseline and FLAML', '',
             f'Machine: {machine()}. OMP_NUM_THREADS=1 for every side (mlnb runs with `--jobs 1`; FLAML n_jobs=1); '
             f"FLAML's time_budget is the seconds mlnb's whole run took on the table. {versions()}.{quick}", '',
             '| table | rows | columns | task | metric | mlnb | baseline | FLAML | mlnb − best | mlnb run (s) |',
             '|---|---:|---:|---|---|---:|---:|---:|---:|---:|']
    for r in results:
        lines.append(f"| {r['table']} | {r['rows']:,} | {r['columns']} | {r['task']} | {r['metric']} | {f(r['mlnb'])} | {f(r['baseline'])} "
                     f"| {f(r['flaml'])} | {r['gap']:+.4f} | {r['mlnb_s']:.1f} |")
    if results:
        mean = lambda k: np.mean([r[k] for r in results])
        lines.append(f"| **average** ({len(results)} tables) | | | | | {f(mean('mlnb'))} | {f(mean('baseline'))} | {f(mean('flaml'))} "
                     f"| {mean('gap'):+.4f} | {mean('mlnb_s'):.1f} |")
        within = sum(r['gap'] >= -0.005 for r in results)
        lines += ['', f"mlnb is within 0.005 of the better of baseline and FLAML on {within} of {len(results)} tables; "
                      f"on average {mean('mlnb') - np.mean([r['best_other'] for r in results]):+.4f} against the better of the two per table "
                      f"({mean('mlnb') - mean('baseline'):+.4f} against the baseline, {mean('mlnb') - mean('flaml'):+.4f} against FLAML)."]
    for n, e in failed.items(): lines += ['', f'**{n}: failed.** ```{e[-600:]}```']
    lines += ['', '## The tables and what mlnb decided', '']
    for r in results:
        d = r['decided']
        lines += [f"**{r['table']}** ({r['n_train']:,} train / {r['n_test']:,} test rows). {r['source']}. Made messy: {r['mess']}.",
                  f"mlnb: model {d['model']} ({d['model_class']}, {', '.join(f'{k}={v}' for k, v in d['model_params'].items())}), "
                  f"search {d['search']}, CV {d['selection_metric']} {d['cv']:.4f}; roles {d['roles']}; dropped {d['dropped'] or 'none'}"
                  + (f"; text {d['text']}" if d['text'] else '') + (f"; dates {d['datetime']}" if d['datetime'] else '')
                  + (f"; categorical {short(d['categorical'])}" if d['categorical'] else '')
                  + f"; {d['n_features']} model features. FLAML's best: {r['flaml_model']}."
                  + (f" {r['task_note']}." if r.get('task_note') else '')
                  + (f" The baseline's HGB with mlnb's model settings: {f(ab['mlnb_settings'])}; with mlnb's categorical roles for "
                     f"{len(ab['numeric_as_categories'])} numeric column(s): {f(ab['mlnb_categories'])}; with both: {f(ab['both'])}."
                     if (ab := r.get('ablation')) else ''), '']
    return '\n'.join(lines)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--tables', help='comma-separated names (default: all; --list shows them)')
    ap.add_argument('--quick', action='store_true', help='600 rows per table'); ap.add_argument('--rows', type=int, default=0)
    ap.add_argument('--out', default=str(ROOT/'bench'/'tables.md')); ap.add_argument('--work', help='project folder (default: a new temporary one, kept)')
    ap.add_argument('--list', action='store_true')
    ap.add_argument('--live', action='store_true', help="run the checkout's notebooks as they are now (default: as committed)")
    a = ap.parse_args()
    if a.list:
        for n, t in TABLES.items(): print(f'{n:16} {t[2]:10} target {t[1]!r}: {t[6]}')
        return 0
    names = a.tables.split(',') if a.tables else list(TABLES)
    if bad := [n for n in names if n not in TABLES]: ap.error(f"--tables: unknown {', '.join(bad)}; known: {', '.join(TABLES)}")
    rows = a.rows or (600 if a.quick else 0)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix='mlnb-bench-tables-'))
    print(f'project folder: {work} (kept: the executed notebooks are under runs/)', flush=True)
    results, failed = [], {}
    for n in names:
        t0 = time.perf_counter()
        try: r = bench_table(n, work, rows, a.live)
        except Exception as e:
            import traceback; traceback.print_exc()
            failed[n] = f'{type(e).__name__}: {e}'; print(f'{n}: FAILED {failed[n][-800:]}', flush=True); continue
        results.append(r)
        print(f"{n:16} {r['task']:10} {r['metric']:8} mlnb {r['mlnb']:.4f}  baseline {r['baseline']:.4f}  FLAML {r['flaml']:.4f} ({r['flaml_model']})"
              f"  gap {r['gap']:+.4f}  mlnb {r['mlnb_s']:.0f} s, all {time.perf_counter() - t0:.0f} s", flush=True)
    quick = (f' Tables sampled to {rows} rows.' if rows else '') + (" mlnb: the checkout's notebooks as they were (--live)." if a.live else f' mlnb at commit {commit()}.')
    md = markdown(results, failed, quick); print('\n' + md)
    out = Path(a.out); out.write_text(md + '\n')
    out.with_suffix('.json').write_text(json.dumps({'machine': machine(), 'rows': rows, 'results': results, 'failed': failed}, indent=1, default=str) + '\n')
    print(f'\nwrote {out} and {out.with_suffix(".json")}')
    return 1 if failed else 0

if __name__ == '__main__':
    sys.exit(main())
