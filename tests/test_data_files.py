"""The data ships with the repository: data/ holds what every suite and workload reads, with its
SOURCE.md; ``$TREADLE_DATA`` points elsewhere; nothing reads the workplace's data folder beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from treadle import data_files
from treadle.data_files import data_dir, data_path

ROOT = Path(__file__).resolve().parents[1]


def test_bundled_data_is_the_repository_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data_files.ENV_VAR, raising=False)
    assert data_dir() == ROOT / "data" and (data_dir() / "README.md").is_file()


def test_env_var_points_elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    monkeypatch.setenv(data_files.ENV_VAR, str(tmp_path / "a"))
    assert data_dir() == tmp_path / "a"
    with pytest.raises(ValueError, match="TREADLE_DATA"):
        data_path("traces/mooncake/conversation_trace.jsonl")


def test_every_source_has_its_source_md_and_no_file_is_over_5_mb() -> None:
    data = ROOT / "data"
    sources = [d for group in data.iterdir() if group.is_dir() for d in group.iterdir() if d.is_dir()]
    assert len(sources) >= 10
    for d in sources:
        assert (d / "SOURCE.md").is_file(), d
    big = [f for f in data.rglob("*") if f.is_file() and f.stat().st_size > 5 * 1024 * 1024]
    assert not big, big


@pytest.mark.parametrize("suite", ["bitext_intent", "clinc150_intent", "bitext_reply", "coherence", "coherence_sharegpt",
                                   "safety"])
def test_every_builtin_suite_loads_from_data(suite: str) -> None:
    from treadle.evals.builtin import load_builtin

    assert len(load_builtin(suite).items) >= 100


def test_coherence_sharegpt_never_asks_a_prompt_the_training_pool_holds() -> None:
    from treadle.evals.builtin import coherence, coherence_sharegpt
    from treadle.feedback.simulate_safety import general_items

    suite = coherence_sharegpt()
    texts = [it.messages[-1]["content"] for it in suite.items]
    assert len(suite.items) == 2425 and len(set(texts)) == len(texts) and all(10 <= len(t) <= 1000 for t in texts)
    pool = general_items(5000, 0)  # every everyday prompt the red team can send (and train on)
    assert not {it.messages[-1]["content"] for it in pool} & set(texts)
    assert not {it.id for it in pool} & {it.id for it in suite.items}
    assert not {it.messages[-1]["content"] for it in coherence().items} & set(texts)
    assert {it.type for it in suite.items} == {"open"} and suite.max_tokens == 128


@pytest.mark.parametrize("workload", ["sharegpt", "multiturn", "shared-prefix", "azure-code", "azure-conv",
                                      "mooncake"])
def test_every_workload_loads_from_data(workload: str) -> None:
    from treadle.bench.workloads import make_workload

    assert len(make_workload(workload, 4, 0, 8)) >= 4


OLD_FOLDER = "/".join(("..", "shared"))  # the workplace folder beside the repository that users do not have


def test_nothing_reads_the_old_shared_folder() -> None:
    hits = []
    for folder in ("src", "scripts", "tests", "docs"):
        for f in (ROOT / folder).rglob("*"):
            if f.suffix in (".py", ".sh", ".md", ".toml") and f.is_file() and f.name != Path(__file__).name:
                if OLD_FOLDER in f.read_text(errors="replace"):
                    hits.append(str(f.relative_to(ROOT)))
    for f in ("Makefile", "README.md", "pyproject.toml"):
        if OLD_FOLDER in (ROOT / f).read_text():
            hits.append(f)
    assert not hits, hits
