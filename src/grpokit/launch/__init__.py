"""Launchers: run the grpokit pipeline somewhere else.

| module | owns |
|---|---|
| `torchrun` | `grpokit train --nproc N`: the same command on N processes through torchrun |
| `sagemaker/` | `grpokit launch sagemaker`: pure request building (settings, plan, staging), a thin submit edge |
| `container` | the other side: inside a SageMaker job, where inputs, the model and checkpoints go |

Each launcher builds its job description with pure functions (config in, request out) that tests
check without a cloud, and talks to the cloud only at a thin edge. Cloud SDKs are optional extras,
imported inside the functions that need them, so `grpokit --help` stays fast.
"""
