"""Dynamic sampling (DAPO): every optimizer step trains on groups whose completions got different rewards.

Where its parts live, in the order a training step uses them:

| part | module |
|---|---|
| the options (`dynamic_sampling:` section, pydantic only) | `grpokit.config.dynamic_sampling` |
| the hook into TRL's generate-and-score step: each round's batch and rewards, returned together | `grpokit.compat.trl_internals` (`GenerationRoundHooks`, `GenerationRound`) |
| the GRPOTrainer subclass: rounds until the batch holds informative groups, the per-step figures | `trainer` |
| which groups carry no signal (weighted totals, zero-spread masks; shared with `grpokit probe`) | `grpokit.rewards.groups` |
| joining a step's rounds into one batch | `rounds` |

Import from the modules themselves.
"""
