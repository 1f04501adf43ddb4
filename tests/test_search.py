"""The hyper-parameter search: seeded Optuna grid and random trials on tiny data, dev-only selection."""

import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from conftest import REPO, recipe_of, tiny_params, toy_sentiment, write_clean
from sentiment import search
from sentiment.config import UserError
from sentiment.models.config import LightBudget
from sentiment.stage import run_stage

SEARCH = {
    "sampler": "grid",
    "trials": 10,
    "seed": 0,
    "storage": "sqlite:///search/optuna.db",
    "study": None,
    "grid": {"learning_rate": [0.001, 0.003], "dropout": [0.0]},
    "random": {"learning_rate": [0.0005, 0.005], "dropout": [0.0, 0.2]},
}
LIGHT = {"epochs": 2, "train_fraction": 0.5, "max_length": 24}


def main(argv):
    run_stage(search.main, search.USAGE, arguments=search.arguments, argv=argv)


@pytest.fixture
def toy_repo(in_tmp, tokenizer):
    write_clean(in_tmp, "toy", {"train": toy_sentiment(96, 1), "dev": toy_sentiment(32, 2), "test": toy_sentiment(32, 3)})
    (in_tmp / "params.yaml").write_text(yaml.safe_dump({**tiny_params(), "search": SEARCH, "light": LIGHT}))
    return in_tmp


def test_trial_recipes_apply_the_light_budget():
    recipe = recipe_of(tiny_params())
    trial = recipe.light(LightBudget(**LIGHT), model={"dropout": 0.2}, learning_rate=0.002)
    assert (trial.train.learning_rate, trial.train.epochs, trial.train.max_length) == (0.002, 2, 24)
    assert trial.model.dropout == 0.2 and recipe.train.epochs == 8
    with pytest.raises(UserError, match="learning_rate"):  # an override is validated as params.yaml is
        recipe.light(LightBudget(**LIGHT), learning_rate=-1)


def test_grid_search_runs_every_grid_point_and_prints_the_command(toy_repo, capsys):
    main(["toy"])  # 10 trials asked, the grid has 2
    table = pd.read_csv(toy_repo / "plots" / "toy" / "search" / "trials_grid.csv")
    assert sorted(table["learning_rate"]) == [0.001, 0.003]
    assert {"dev_f1_macro", "dev_loss", "seconds"} <= set(table.columns)
    assert not any(c.startswith("test") for c in table.columns)
    out = capsys.readouterr().out
    best = table.sort_values("dev_f1_macro", ascending=False).iloc[0]
    assert f"dvc exp run -S train.learning_rate={best['learning_rate']:.3g}" in out


@pytest.mark.slow  # spawned trial processes
def test_random_search_is_seeded(toy_repo):
    main(["toy", "--sampler", "random", "--trials", "2"])
    first = pd.read_csv(toy_repo / "plots" / "toy" / "search" / "trials_random.csv")
    main(["toy", "--sampler", "random", "--trials", "2", "--restart"])
    second = pd.read_csv(toy_repo / "plots" / "toy" / "search" / "trials_random.csv")
    assert first["learning_rate"].tolist() == second["learning_rate"].tolist()
    assert first["dev_f1_macro"].tolist() == second["dev_f1_macro"].tolist()
    assert all(0.0005 <= lr <= 0.005 for lr in first["learning_rate"])


def test_an_existing_study_is_neither_joined_nor_replaced_unasked(toy_repo, capsys):
    main(["toy", "--trials", "1"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["toy", "--trials", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.count("\n") == 1 and "--resume" in err and "--restart" in err


@pytest.mark.slow  # two worker processes
def test_two_workers_share_one_sqlite_study_and_record_every_trial_once(toy_repo):
    import optuna

    main(["toy", "--sampler", "random", "--trials", "4", "--workers", "2"])
    study = optuna.load_study(study_name="toy-random", storage="sqlite:///search/optuna.db")
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    # each worker stops once the study holds 4 trials; a worker already past the check may add one
    assert 4 <= len(trials) <= 5 and sorted(numbers) == list(range(len(trials)))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({(t.params["learning_rate"], t.params["dropout"]) for t in trials}) == len(trials)  # per-worker seeds
    assert len({t.user_attrs["run"] for t in trials}) == 1  # both workers belong to this invocation
    table = pd.read_csv(toy_repo / "plots" / "toy" / "search" / "trials_random.csv")
    assert table["trial"].tolist() == sorted(numbers)  # each trial once in the table, from the shared storage
    main(["toy", "--sampler", "random", "--trials", "6", "--resume"])  # another machine or a later run joins
    assert len(optuna.load_study(study_name="toy-random", storage="sqlite:///search/optuna.db").trials) >= 6


@pytest.fixture(scope="module")
def postgres_url():
    import postgres

    if postgres.binaries() is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    with postgres.server() as url:
        yield url


def search_command(repo, *argv) -> list[str]:
    return [sys.executable, "-m", "sentiment.search", "toy", *argv]


def readme_search_command() -> list[str]:
    """The README's multi-machine command, for the toy dataset."""
    block = re.search(r"<!-- shared-search -->\n```bash\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)
    assert block, "README.md has no shared-search block"
    words = block.group(1).split()
    assert words[:3] == ["python", "-m", "sentiment.search"]
    return [sys.executable, "-m", "sentiment.search", "toy", *words[4:]]


def run_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}


@pytest.mark.slow  # worker processes on a real PostgreSQL server
@pytest.mark.servers
def test_two_workers_share_one_postgres_study_and_a_killed_worker_is_retried(toy_repo, postgres_url):
    import optuna

    params = yaml.safe_load((toy_repo / "params.yaml").read_text())
    search_params = {**SEARCH, "storage": postgres_url, "heartbeat_seconds": 1, "sampler": "random", "trials": 4}
    (toy_repo / "params.yaml").write_text(yaml.safe_dump({**params, "search": search_params}))
    # the README's multi-machine command (two workers, joining or creating the study), as a machine runs it
    subprocess.run(readme_search_command(), cwd=toy_repo, env=run_env(), check=True)
    study = optuna.load_study(study_name="toy-random", storage=postgres_url)
    trials = study.get_trials(deepcopy=False)
    assert 4 <= len(trials) <= 5 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # every trial recorded once
    table = pd.read_csv(toy_repo / "plots" / "toy" / "search" / "trials_random.csv")
    assert table["trial"].tolist() == sorted(t.number for t in trials)

    # a worker killed mid-trial: the next worker fails its trial (no heartbeat) and retries the same params
    slow = {**search_params, "study": "killed", "trials": 2}
    (toy_repo / "params.yaml").write_text(yaml.safe_dump({**params, "search": slow, "light": {**LIGHT, "epochs": 40}}))
    victim = subprocess.Popen(search_command(toy_repo, "--resume"), cwd=toy_repo, env=run_env(), stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    space = set(trials[0].params)  # killed once every param is drawn: in training, not between two suggestions
    while time.time() < deadline and not any(set(t.params) == space for t in running_trials(postgres_url, "killed")):
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    [lost] = running_trials(postgres_url, "killed")
    time.sleep(4)  # past the grace period (twice the heartbeat)
    (toy_repo / "params.yaml").write_text(yaml.safe_dump({**params, "search": slow}))
    subprocess.run(search_command(toy_repo, "--resume"), cwd=toy_repo, env=run_env(), check=True)
    trials = optuna.load_study(study_name="killed", storage=postgres_url).get_trials(deepcopy=False)
    states = {t.number: t.state for t in trials}
    assert states[lost.number] == optuna.trial.TrialState.FAIL
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2
    retried = [t for t in done if t.system_attrs.get("failed_trial") == lost.number]
    assert len(retried) == 1 and retried[0].params == lost.params


def running_trials(url: str, study: str):
    import optuna

    try:
        trials = optuna.load_study(study_name=study, storage=url).get_trials(deepcopy=False)
    except KeyError:  # the study is not created yet
        return []
    return [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
