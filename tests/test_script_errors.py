"""Mistakes on the command line stop the scripts with one line, before a run writes anything.

Hydra itself creates the run dir with `.hydra/` and the job log before the task starts."""
import pytest

from conftest import run_script

pytestmark = pytest.mark.slow

HYDRA_OWN = [".hydra", "train.log"]


def one_line_error(proc) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) < 300, proc.stderr[-3000:]
    return lines[0]


# Each config check's message is tested in the process (test_run_checks.py: every group's typed
# keys, seed, optimizer.lr=abc, freeze.trainable=abc...); these show the script's side, one line
# and nothing written, once per kind of check: a built optimizer, a typed key, the data's own.
@pytest.mark.parametrize("overrides, says", [
    (["optimizer.lr=-1"], "error: optimizer (torch.optim.Adam): Invalid learning rate: -1"),
    (["data.batch_size=abc"], "error: data.batch_size='abc' does not fit XrayDataModule's batch_size (int)"),
    (["data=manifest", "data.path={tmp}/empty.csv"], "error: manifest '{tmp}/empty.csv' is empty"),
])
def test_train_py_mistakes(tmp_path, overrides, says):
    (tmp_path / "empty.csv").write_bytes(b"")
    run_dir = tmp_path / "run"
    proc = run_script("train.py", *[o.format(tmp=tmp_path) for o in overrides], f"hydra.run.dir={run_dir}")
    assert one_line_error(proc).startswith(says.format(tmp=tmp_path))
    assert sorted(p.name for p in run_dir.iterdir()) == HYDRA_OWN


@pytest.mark.parametrize("script", ["evaluate.py", "explain.py"])
def test_evaluate_and_explain_without_a_checkpoint(tmp_path, script):
    proc = run_script(script, f"hydra.run.dir={tmp_path / 'out'}")
    assert one_line_error(proc) == "error: missing required value: add ckpt_path=... to the command line"


@pytest.mark.parametrize("script", ["train.py", "evaluate.py", "explain.py", "predict.py", "export.py"])
def test_hydra_tab_completion_passes_the_key_check(script):
    proc = run_script(script, "-sc", "install=bash")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "complete -o nospace -o default -F hydra_bash_completion python" in proc.stdout


@pytest.mark.parametrize("script", ["evaluate.py", "explain.py", "predict.py", "export.py"])
def test_a_misspelled_key_is_one_line_in_every_script(tmp_path, script):
    proc = run_script(script, "ckpt_pth=x.ckpt", f"hydra.run.dir={tmp_path / 'out'}")
    assert one_line_error(proc) == "error: unknown key 'ckpt_pth'; did you mean 'ckpt_path'?"
    assert not (tmp_path / "out").exists()
