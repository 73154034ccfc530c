"""`grpokit train CONFIG --nproc N`: start the same command on N processes with torchrun.

grpokit re-runs itself as `python -m torch.distributed.run <rendezvous> -m grpokit train CONFIG ...`
with the same arguments minus the launch options, forwards SIGTERM and SIGINT to that child and
exits with its exit code. Each of the N processes then runs the ordinary recipe; accelerate reads
RANK / WORLD_SIZE from the environment torchrun sets.

Rendezvous: one machine uses torchrun's `--standalone` (a free local port, so two runs on one host
never collide). Several machines use a static rendezvous (`--nnodes`, `--node-rank`, `--master-addr`,
`--master-port`); inside a SageMaker job those default to what `SM_HOSTS`, `SM_CURRENT_HOST` and
`SM_MASTER_ADDR` say. This module imports neither torch nor transformers, so starting is quick.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from grpokit.errors import ConfigError

DEFAULT_MASTER_PORT = 29500
# The `train` options that describe the launch; they are not passed on to the processes.
SHUTDOWN_TIMEOUT_SECONDS = 115
LAUNCH_OPTIONS = ("--nproc", "--nnodes", "--node-rank", "--master-addr", "--master-port")
# Any of these means the process was itself started by torchrun / accelerate launch.
LAUNCHED_MARKERS = ("LOCAL_RANK", "TORCHELASTIC_RUN_ID")
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class Rendezvous:
    """Where the processes of a run meet: how many machines, which one this is, and the master's address."""

    nproc_per_node: int
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None


def sagemaker_rendezvous(env: Mapping[str, str] = os.environ) -> dict[str, object]:
    """nnodes, node_rank, master_addr and master_port from a SageMaker job's environment; `{}` elsewhere.

    SageMaker sets `SM_HOSTS` (a JSON list like `["algo-1", "algo-2"]`) and `SM_CURRENT_HOST`;
    the master is `SM_MASTER_ADDR` when set, else the first host.
    """
    if not env.get("SM_HOSTS"):
        return {}
    hosts = json.loads(env["SM_HOSTS"])
    current = env.get("SM_CURRENT_HOST", hosts[0])
    return {
        "nnodes": len(hosts),
        "node_rank": hosts.index(current) if current in hosts else 0,
        "master_addr": env.get("SM_MASTER_ADDR") or hosts[0],
        "master_port": int(env.get("SM_MASTER_PORT") or DEFAULT_MASTER_PORT),
    }


def resolve_rendezvous(
    nproc: int,
    *,
    nnodes: int | None = None,
    node_rank: int | None = None,
    master_addr: str | None = None,
    master_port: int | None = None,
    env: Mapping[str, str] = os.environ,
) -> Rendezvous:
    """The rendezvous from the command-line options, SageMaker's environment filling the ones not given.

    Raises `ConfigError` when the process already runs under a launcher, or the options cannot work.
    """
    if any(env.get(name) for name in LAUNCHED_MARKERS):
        raise ConfigError(
            "--nproc was given, but this process was already started by torchrun or accelerate launch",
            fix="drop --nproc (the launcher already sets the process count), or run `grpokit train --nproc N` directly",
        )
    if nproc < 1:
        raise ConfigError(f"--nproc must be 1 or more, got {nproc}", fix="for example --nproc 2")
    given = {"nnodes": nnodes, "node_rank": node_rank, "master_addr": master_addr, "master_port": master_port}
    merged = {
        **sagemaker_rendezvous(env),
        **{key: value for key, value in given.items() if value is not None},
    }
    rendezvous = Rendezvous(nproc_per_node=nproc, **merged)  # type: ignore[arg-type]
    if rendezvous.nnodes > 1 and not rendezvous.master_addr:
        raise ConfigError(
            f"--nnodes {rendezvous.nnodes} needs the address of the node with rank 0",
            fix="add --master-addr HOST (and the same --master-port on every node)",
        )
    if not 0 <= rendezvous.node_rank < rendezvous.nnodes:
        raise ConfigError(
            f"--node-rank {rendezvous.node_rank} is outside 0..{rendezvous.nnodes - 1}",
            fix="number the machines 0 .. nnodes-1, the master being 0",
        )
    return rendezvous


def needs_launcher(rendezvous: Rendezvous) -> bool:
    """One process on one machine runs in place; anything else goes through torchrun."""
    return rendezvous.nproc_per_node > 1 or rendezvous.nnodes > 1


def strip_launch_options(argv: Sequence[str]) -> list[str]:
    """`argv` without the launch options (`--nproc 2` and `--nproc=2` forms alike)."""
    kept: list[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg in LAUNCH_OPTIONS:
            skip_value = True
        elif not arg.startswith(tuple(option + "=" for option in LAUNCH_OPTIONS)):
            kept.append(arg)
    return kept


def torchrun_command(argv: Sequence[str], rendezvous: Rendezvous, python: str = sys.executable) -> list[str]:
    """The torchrun command line that runs `grpokit <argv>` as the rendezvous says.

    `argv` is grpokit's own arguments (`["train", "config.yaml", "--nproc", "2", ...]`); the launch
    options in it are dropped.
    """
    command = [python, "-m", "torch.distributed.run", "--nproc-per-node", str(rendezvous.nproc_per_node)]
    # On SIGTERM the ranks checkpoint after their current step; torchrun's default 30 s before SIGKILL
    # is shorter than a GRPO step plus a save. SageMaker's own grace period is 120 s.
    command += ["--shutdown-timeout", str(SHUTDOWN_TIMEOUT_SECONDS)]
    if rendezvous.nnodes == 1 and rendezvous.master_addr is None and rendezvous.master_port is None:
        command.append("--standalone")
    else:
        command += [
            "--nnodes", str(rendezvous.nnodes),
            "--node-rank", str(rendezvous.node_rank),
            "--master-addr", rendezvous.master_addr or "127.0.0.1",
            "--master-port", str(rendezvous.master_port or DEFAULT_MASTER_PORT),
        ]  # fmt: skip
    return [*command, "-m", "grpokit", *strip_launch_options(argv)]


def run_forwarding_signals(command: Sequence[str]) -> int:
    """Run `command`, pass SIGTERM / SIGINT on to it, and return its exit code (128 + N if killed by signal N).

    The child gets its own session, so a Ctrl-C in the terminal reaches it once (through us), not twice.
    """
    child = subprocess.Popen(list(command), start_new_session=True)
    forwarded: list[int] = []

    def forward(signum, frame) -> None:
        if child.poll() is None:
            forwarded.append(signum)
            child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    try:
        return_code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if child.poll() is None:  # we are leaving on an exception: leave no orphan behind
            child.kill()
            child.wait()
    if forwarded and return_code != 0:
        # torchrun reports a stop it was asked for as a failure (exit 1); the ranks checkpointed and
        # stopped, which is what 128 + the signal means, as for a single process.
        return 128 + forwarded[0]
    return 128 - return_code if return_code < 0 else return_code
