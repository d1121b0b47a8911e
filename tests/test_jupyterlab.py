"""JupyterLab as a user uses it (issue 23, item 6): a real `jupyter lab` on loopback, the monitor stage notebook opened in
headless Chromium (Debian's chromium and chromedriver, driven by Selenium), Run ▸ Run All Cells from the menu, and the
rendered outputs checked: no traceback, the stage's tables and figures there, every figure decoded. The notebook runs on its
own defaults (a demo model and three months of a batch whose age moves in March) from a copy in a temporary project, so the
checkout is only read. With `MLNB_SCREENSHOTS=docs` the browser's view of the monitor's drift plot is kept as docs/monitor.png."""
import json, os, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import psutil, pytest
from conftest import ROOT
from test_report_page import CHROMIUM, NO_CHROMIUM, keep_screenshot

DRIVER = '/usr/bin/chromedriver'
NOTEBOOK = 'nbs/90_monitor.ipynb'
try: import selenium
except ImportError: selenium = None

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=NO_CHROMIUM),
              pytest.mark.skipif(not os.access(DRIVER, os.X_OK), reason=f"{DRIVER} is not installed: run `bash tests/install-chromium.sh` (it apt-get installs Debian's chromium-driver)"),
              pytest.mark.skipif(selenium is None, reason='selenium is not installed: `make install` (it is in dev_requirements)')]

def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def project_copy(top: Path) -> Path:
    "A project root the notebook can run in: settings.ini (how mlnb finds the root), the data read-only through a link, a copy of the notebook."
    root = top/'project'; (root/'nbs').mkdir(parents=True)
    shutil.copy(ROOT/'settings.ini', root); (root/'data').symlink_to(ROOT/'data', target_is_directory=True); shutil.copy(ROOT/NOTEBOOK, root/NOTEBOOK)
    return root

def lab_env(top: Path) -> dict:
    "Jupyter's and the kernel's state in `top`: config, runtime, settings, workspaces and temporary files; no news or update checks."
    dirs = {k: top/v for k, v in dict(JUPYTER_CONFIG_DIR='config', JUPYTER_RUNTIME_DIR='runtime', JUPYTERLAB_SETTINGS_DIR='settings',
                                      JUPYTERLAB_WORKSPACES_DIR='workspaces', IPYTHONDIR='ipython', TMPDIR='tmp').items()}
    for d in dirs.values(): d.mkdir(parents=True, exist_ok=True)
    (dirs['JUPYTER_CONFIG_DIR']/'labconfig').mkdir()   # the "receive Jupyter news?" toast off
    (dirs['JUPYTER_CONFIG_DIR']/'labconfig'/'page_config.json').write_text(json.dumps({'disabledExtensions': {'@jupyterlab/apputils-extension:announcements': True}}))
    return {**os.environ, 'OMP_NUM_THREADS': '1', **{k: str(v) for k, v in dirs.items()}}

@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on 127.0.0.1 with a token, serving a project copy; shut down with its kernels afterwards."
    root, port, token = project_copy(tmp_path), free_port(), secrets.token_hex(16)
    log = open(tmp_path/'lab.log', 'w')
    proc = subprocess.Popen([str(Path(sys.executable).parent/'jupyter'), 'lab', '--no-browser', '--ip=127.0.0.1', f'--port={port}', '--ServerApp.port_retries=0',
                             f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}', '--LabApp.news_url=None',
                             '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate', '--LabApp.extension_manager=readonly',
                             *(['--allow-root'] if os.geteuid() == 0 else [])],   # CI runs as root
                            cwd=root, env=lab_env(tmp_path), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base, auth = f'http://127.0.0.1:{port}', {'Authorization': f'token {token}'}
    try:
        for _ in range(600):
            assert proc.poll() is None, f'jupyter lab exited {proc.returncode}:\n' + (tmp_path/'lab.log').read_text()[-3000:]
            try:
                with urllib.request.urlopen(urllib.request.Request(f'{base}/api/status', headers=auth), timeout=2) as r:
                    if r.status == 200: break
            except OSError: time.sleep(0.1)
        else: pytest.fail('jupyter lab did not answer within 60 s:\n' + (tmp_path/'lab.log').read_text()[-3000:])
        yield base, token, root
    finally:
        kids = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []   # its kernels
        try: urllib.request.urlopen(urllib.request.Request(f'{base}/api/shutdown', method='POST', headers=auth), timeout=10).close()
        except OSError: proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait(10)
        _, alive = psutil.wait_procs(kids, timeout=10)
        for p in alive: p.kill()
        log.close()
        assert not alive, f'jupyter lab left processes running: {alive}'

@pytest.fixture
def browser():
    "Headless Debian chromium through its chromedriver; closed (with every browser process) afterwards."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions(); opts.binary_location = CHROMIUM
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1280,900', '--hide-scrollbars'): opts.add_argument(a)
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    kids = psutil.Process(d.service.process.pid).children(recursive=True)
    try: yield d
    finally:
        d.quit()
        _, alive = psutil.wait_procs(kids, timeout=10)
        for p in alive: p.kill()

STATE = '''const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
if (!nb) return null;
const outs = sel => [...nb.querySelectorAll(sel)];
const kernel = [...document.querySelectorAll('.jp-StatusBar-TextItem')].map(e => e.textContent).find(t => t.includes(' | '));
return {status: /^No Kernel/.test(kernel || 'No Kernel') ? 'no kernel' : kernel.split(' | ').pop().toLowerCase(),   // the status bar's "Python 3 (ipykernel) | Idle"
        prompts: outs('.jp-CodeCell .jp-InputArea-prompt').map(p => p.textContent.trim()),
        stderr: outs('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').map(o => o.textContent),
        tables: outs('.jp-OutputArea-output.jp-RenderedHTMLCommon table').length,
        images: outs('.jp-OutputArea-output.jp-RenderedImage img').map(i => i.complete && i.naturalWidth > 0),
        text: outs('.jp-OutputArea-output').map(o => o.textContent).join('\\n')};'''

def finished(s) -> bool:
    "Run All has ended: the kernel idle, no cell queued or running, and either every cell numbered or a traceback shown (the rest never ran)."
    return bool(s) and s['status'] == 'idle' and not any('*' in p for p in s['prompts']) and (
        all(p[1:-2].isdigit() for p in s['prompts']) or any('Traceback' in e for e in s['stderr']))

def test_monitor_notebook_runs_in_jupyterlab(lab, browser):
    "Open the monitor stage in JupyterLab, Run ▸ Run All Cells, and read what a user sees: no traceback, the chunks' tables and drift figures."
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    base, token, _ = lab
    browser.get(f'{base}/lab/tree/{NOTEBOOK}?token={token}')
    WebDriverWait(browser, 90).until(lambda d: (d.execute_script(STATE) or {}).get('status') == 'idle')   # Lab loaded, the notebook's kernel started and connected
    ActionChains(browser).key_down(Keys.CONTROL).send_keys('b').key_up(Keys.CONTROL).perform()   # the file browser closed: the notebook full width
    browser.find_element(By.XPATH, "//li[contains(@class, 'lm-MenuBar-item')][normalize-space()='Run']").click()
    WebDriverWait(browser, 10).until(EC.element_to_be_clickable((By.CSS_SELECTOR, 'li.lm-Menu-item[data-command="runmenu:run-all"]'))).click()
    s, end = None, time.monotonic() + 180
    while not finished(s):
        assert time.monotonic() < end, f"Run All did not end within 180 s: kernel {s and s['status']}, prompts {s and s['prompts']}"
        time.sleep(0.5); s = browser.execute_script(STATE)
    assert not (tb := [e for e in s['stderr'] if 'Traceback' in e]), tb[0][-3000:]
    assert s['prompts'] and all(p[1:-2].isdigit() for p in s['prompts']), s['prompts']   # every code cell ran
    assert s['tables'] >= 5, s['tables']   # the drift table, the chunks, the alerts, ...
    assert len(s['images']) >= 5 and all(s['images']), s['images']   # column and prediction drift, chunk plots, CBPE; each decoded
    assert all(m in s['text'] for m in ('2024-01', '2024-03', 'weighted_drift', 'age')), s['text'][:3000]
    plot = browser.execute_script('''const cell = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')]
      .find(c => c.querySelector('.jp-InputArea-editor').textContent.includes("for what in ['weighted_drift'"));
      const img = cell && cell.querySelector('.jp-RenderedImage img'); if (img) img.scrollIntoView({block: 'center'}); return img;''')
    assert plot is not None and plot.size['width'] > 300, 'the weighted_drift plot of the chunks is not shown'
    time.sleep(0.3)   # the scroll painted
    keep_screenshot(browser.get_screenshot_as_png(), 'monitor.png')
