"""The data stage: dataset files in, prompts TRL can train on out.

| module | owns |
|---|---|
| `options` | the `dataset:` section (`DatasetOptions`) and the column names the pipeline relies on |
| `readers` | `load_table`: JSON / JSONL / `dataset.json` dirs / CSV / Parquet / Arrow / `save_to_disk` dirs |
| `prompts` | `prepare_dataset`: the prompt column, template, system prompt, column and prompt checks |
| `loading` | `load_datasets`: the train and test splits of a run, and the line that describes them |

Import from the modules themselves (this file imports nothing, so the config can name
`DatasetOptions` without loading pandas and pyarrow).
"""
