"""``horovodrun`` for the local runtime's ``--gloo`` ranks, without its build probe.

Before it starts any rank, horovodrun asks whether Horovod was built with Gloo
(``horovod.common.util.gloo_built``). It finds out by importing ``horovod.tensorflow``, and so
TensorFlow, in a throwaway process. On this project's 2-core machine that costs 7-8 s of CPU when
idle and about 12 s during ``make run``, on every multi-rank training, before the ranks do their
own TensorFlow import.

The answer is already known. The workload venv's Horovod is built with ``HOROVOD_WITH_GLOO=1``
(the Makefile's ``HOROVOD_BUILD_ENV``, images/train/Dockerfile), which makes the build fail rather
than leave Gloo out; ``make setup`` asserts ``hvd.gloo_built()`` once per install, and the
platform's two-rank training tests go through this launcher. So with
``--gloo`` it takes the build as given. Everything else is Horovod's own launcher, unchanged:
argument parsing, the rendezvous server, rank environment, output prefixes and exit codes.
Without ``--gloo`` (MPI, the cluster's launchers) it is plain ``horovodrun``.

    python -m model_steps.horovod_launch -np 2 -H localhost:2 --gloo python -m model_steps train …
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from horovod.runner import launch

    args = sys.argv[1:] if argv is None else argv
    if "--gloo" in args:
        launch.gloo_built = _built_with_gloo  # run_controller's only probe on the --gloo path
    sys.argv = ["horovodrun", *args]
    return int(launch.run_commandline() or 0)


def _built_with_gloo(verbose: bool = False) -> bool:
    return True


if __name__ == "__main__":
    raise SystemExit(main())
