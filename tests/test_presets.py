"""Paper presets (``conf/experiment/<paper>/*.yaml``) and their metafiles of published numbers.

Every preset is discovered from the folders, composes, validates and runs one ``fast_dev_run``
step (one training batch, one val and one test batch) on a tiny real store with the preset's
method, strategy, aggregator, head, dataset and schedule, shrunk to 16-d frames; every metafile
row names its paper table and a preset that exists.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from vltr.data.synthetic import SyntheticSpec, generate
from vltr.training.config import validate_config

CONF = resources.files("vltr.conf").joinpath("experiment")
PAPERS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and not p.name.startswith("_"))
PRESETS = sorted(
    f"{paper}/{p.name[: -len('.yaml')]}"
    for paper in PAPERS
    for p in CONF.joinpath(paper).iterdir()
    if p.name.endswith(".yaml") and p.name != "metafile.yaml"
)
METRICS = {"mAP", "mAP_head", "mAP_medium", "mAP_tail", "acc1", "acc5"}
PARTS = ("method", "strategy", "aggregator", "head", "features", "dataset")
# size keys shrunk wherever a preset's config has them (paper sizes need minutes per step)
SHRINK = {
    "aggregator": {
        "hidden_dim": 16,
        "num_clusters": 4,
        "attentive_dim": 8,
        "codebook_dim": 8,
        "attention_dim": 8,
        "embed_dim": 16,
    },
    "head": {"hidden_dim": 16},
    "method": {"embed_dim": 16, "neck_dim": 8},
}

Compose = Callable[..., DictConfig]


def test_every_paper_has_presets_and_a_metafile() -> None:
    assert {"videolt", "move", "medc", "meid"} <= set(PAPERS)
    for paper in PAPERS:
        assert CONF.joinpath(paper, "metafile.yaml").is_file(), paper
        assert any(p.startswith(f"{paper}/") for p in PRESETS), paper


@pytest.mark.parametrize("paper", PAPERS)
def test_metafile_rows_name_their_table_and_preset(paper: str) -> None:
    meta = yaml.safe_load(CONF.joinpath(paper, "metafile.yaml").read_text())
    assert meta["paper"]
    assert meta["rows"], paper
    for row in meta["rows"]:
        assert f"{paper}/{row['preset']}" in PRESETS, row["preset"]
        assert str(row["table"]).strip() and str(row["row"]).strip(), row
        assert row["metrics"] and set(row["metrics"]) <= METRICS, row
        assert all(0.0 <= float(v) <= 1.0 for v in row["metrics"].values()), row


@pytest.fixture(scope="module")
def preset_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = SyntheticSpec(
        num_classes=6,
        n_max=40,
        imbalance_ratio=0.2,
        frames=12,
        dim=16,
        min_eval_per_class=2,
        latent_dim=8,
        backbone_hidden=16,
    )
    return generate(spec, tmp_path_factory.mktemp("presets") / "tiny.h5")


def _shrunk(cfg: DictConfig) -> list[str]:
    out = []
    for group, keys in SHRINK.items():
        node = cfg.get(group) or {}
        out += [f"{group}.{k}={v}" for k, v in keys.items() if node.get(k) is not None]
    return out


def _run_key(cfg: DictConfig) -> str:
    """What the shrunk run depends on: presets that differ only in names, tags or the
    backbone (the same 16-d frames once shrunk) run the same step, so it runs once."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in ("run_name", "tags", "features", "paths"):
        plain.pop(key, None)
    plain["dataset"].pop("name", None)
    return yaml.safe_dump(plain, sort_keys=True)


_RAN: dict[str, str] = {}  # run key -> the preset whose step ran it


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_says_what_it_is_and_runs_a_step(
    compose_cfg: Compose, preset_store: Path, name: str
) -> None:
    from hydra.core.hydra_config import HydraConfig

    from vltr.training.train import train

    paper = compose_cfg(f"experiment={name}")
    validate_config(paper)
    assert paper.dataset.expected_dim == paper.features.dim
    # {method}_{strategy}_{aggregator}_{head}_{features}_{dataset}, '-' inside a part
    choices = HydraConfig.get().runtime.choices
    parts = name.split("/", 1)[1].split("_")
    assert len(parts) == len(PARTS), name
    for part, group in zip(parts, PARTS, strict=True):
        if group == "dataset":
            part = part.split("-ir")[0]  # MOVE Table 3: the imbalance ratio as a variant
        assert part.replace("-", "_") == choices[group], (name, group)
    # one fast_dev_run step on a tiny real store, at 16-d
    tiny = [
        "features.dim=16",
        "features.frames=12",
        "dataset.clip_frames=6",
        "dataset.batch_size=8",
        "dataset.num_workers=0",
        "logger=none",
        "+trainer.fast_dev_run=true",
        "trainer.enable_progress_bar=false",
        "~callbacks.rich_progress_bar",
    ]
    if paper.dataset.name != "synthetic":
        tiny.append(f"dataset.path={preset_store}")
    else:
        tiny += [
            "dataset.synthetic.num_classes=6",
            "dataset.synthetic.n_max=40",
            "+dataset.synthetic.min_eval_per_class=2",
        ]
    cfg = compose_cfg(f"experiment={name}", *tiny, *_shrunk(paper))
    with open_dict(cfg):
        cfg.callbacks.model_checkpoint.save_last = False
    key = _run_key(cfg)
    if key in _RAN:
        return  # the same step already ran for an equivalent preset
    result = train(cfg)
    assert set(result["test"]) >= {"mAP", "mAP_tail"}, name
    _RAN[key] = name
