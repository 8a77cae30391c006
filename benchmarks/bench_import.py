"""Import time, each import in a fresh interpreter: fulmen against torch, Lightning, wandb, MLflow
and TensorBoard.

"after torch" cases import torch first (untimed) and time only what the second import adds, which is
the cost a training script pays on top of PyTorch itself.

    python benchmarks/bench_import.py [--repeats 5] [--warmup 1]

Run it with the anchors' interpreter (see benchmarks/README.md) to see the anchors' rows; without
them those rows say "not installed".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import Case, Unavailable, main


def import_case(name: str, statement: str, *, after: str = "", needs: str = "") -> Case:
    """A case that times ``statement`` in a fresh interpreter, after the untimed ``after``."""
    code = "\n".join(
        [
            after,
            "import time",
            "_t0 = time.perf_counter()",
            statement,
            "print(repr(time.perf_counter() - _t0))",
        ]
    )

    def run() -> float:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            if "ModuleNotFoundError" in last or "ImportError" in last:
                raise Unavailable(f"not installed ({last})")
            raise RuntimeError(f"{name}: child failed:\n{proc.stderr}")
        return float(proc.stdout.strip().splitlines()[-1])

    note = f"after `{after}`" if after else ""
    return Case(name, run, note=note or needs)


CASES = [
    import_case("import torch", "import torch"),
    import_case("import fulmen", "import fulmen"),
    import_case("import fulmen.track", "import fulmen.track"),
    import_case(
        "from fulmen import Trainer, after torch",
        "from fulmen import Trainer",
        after="import torch",
    ),
    import_case("import fulmen.train, after torch", "import fulmen.train", after="import torch"),
    import_case("import pytorch_lightning", "import pytorch_lightning"),
    import_case(
        "import pytorch_lightning, after torch", "import pytorch_lightning", after="import torch"
    ),
    import_case("import wandb", "import wandb"),
    import_case("import mlflow", "import mlflow"),
    import_case(
        "SummaryWriter, after torch",
        "from torch.utils.tensorboard import SummaryWriter",
        after="import torch",
    ),
]


if __name__ == "__main__":
    main(
        "import",
        "Import time (fresh interpreter each)",
        CASES,
        baseline="import torch",
        unit="ms",
        scale=1e3,
    )
