"""``vltr-eval ckpt_path=PATH``: evaluate a checkpoint written by ``vltr-train``.

A thin ``@hydra.main`` over :func:`vltr.training.evaluate.evaluate`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from vltr.cli.common import hydra_errors, user_errors
from vltr.training.evaluate import evaluate
from vltr.utils.warnings import quiet_known_warnings


@hydra.main(version_base="1.3", config_path="pkg://vltr.conf", config_name="eval")
def hydra_main(cfg: DictConfig) -> None:
    quiet_known_warnings()
    with user_errors("vltr-eval"):
        evaluate(cfg)


def main() -> None:
    """``vltr-eval``: Hydra's own errors (a mistyped override, an unknown option) in one line."""
    with hydra_errors("vltr-eval"):
        hydra_main()


if __name__ == "__main__":
    main()
