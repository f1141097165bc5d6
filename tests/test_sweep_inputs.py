"""Issue #31, the rows about bad input: every one refused at load with one line naming the file or key (nothing
written), SLURM values that cannot add lines to the job script, data files read with their encoding and rows checked,
a key given twice, repeated items, a byte-order mark. Each test fails on 44f4033."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import submitit
import yaml
from submitit.slurm.slurm import _as_sbatch_flag, _make_sbatch_string

from harness.config import ConfigError, TaskConfig, read_yaml
from harness.sweep.executors import slurm_parameters
from harness.sweep.spec import ExecutorConfig, load_spec
from harness.tasks import load_task
from harness.tasks.gsm8k import load_gsm8k_jsonl
from harness.tasks.jsonl import load_benchmark
from harness.tasks.records import RepeatedItems
from tests.conftest import ROOT, SMOKE
from tests.test_cli import tiny_model_dir

GSM8K_ROW = '{"question": "What is 2 + 3?", "answer": "2 + 3 = 5\\n#### 5"}\n'

HOSTILE = [
    ('executor.partition="a100\\ntouch /tmp/PWNED #"', "executor.partition"),
    ('executor.account="acct\\nrm -rf ~"', "executor.account"),
    ("executor.account='x;y'", "executor.account"),
    ('executor.sbatch={"qos\\ntouch /tmp/PWNED": high}', "executor.sbatch: sbatch key"),
    ('executor.sbatch={qos: "high\\ntouch /tmp/PWNED"}', "executor.sbatch: sbatch.qos is"),
    ("executor.sbatch={comment: \"a'b\"}", "executor.sbatch: sbatch.comment is"),
    ("executor.sbatch={comment: '$(id)'}", "executor.sbatch: sbatch.comment is"),
    ("executor.sbatch={comment: '`id`'}", "executor.sbatch: sbatch.comment is"),
    ("executor.sbatch={comment: 'a#b'}", "executor.sbatch: sbatch.comment is"),
]


@pytest.mark.parametrize(("override", "key"), HOSTILE)
def test_slurm_values_that_could_add_a_line_to_the_job_script_are_refused_at_load(override, key):
    with pytest.raises(ConfigError, match=rf"\n  {key}"):
        load_spec(SMOKE, [override, "executor.kind=slurm"])


def test_the_dry_run_refuses_a_partition_with_a_newline():
    result = subprocess.run([sys.executable, "-m", "harness.sweep", str(SMOKE), "--dry-run", "--set",
                             HOSTILE[0][0]], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "executor.partition" in result.stderr and "Traceback" not in result.stderr


def sbatch_script(config: ExecutorConfig) -> list[str]:
    """The lines of the sbatch script submitit writes for `config`'s jobs (its own builder; no cluster needed)."""
    converter = object.__new__(submitit.SlurmExecutor)  # only its parameter renaming: no srun needed
    params = converter._convert_parameters({k.removeprefix("slurm_"): v for k, v in slurm_parameters(config).items()})
    return _make_sbatch_string(command="python -m submitit.core._submit /jobs", folder="/jobs", map_count=4,
                               **params).splitlines()


def directives_then_command(lines: list[str]) -> bool:
    """The script is `#!/bin/bash`, `# Parameters`, only `#SBATCH` lines, then submitit's command block."""
    head = lines[: lines.index("# command")]
    return head[:3] == ["#!/bin/bash", "", "# Parameters"] and all(line.startswith("#SBATCH --") for line in head[3:-1])


def test_every_executor_field_becomes_one_sbatch_line_and_nothing_more():
    legit = ExecutorConfig(kind="slurm", partition="a100,h100", account="lab-1.x", gpus_per_trial=2,
                           cpus_per_trial=8, mem_gb=64, array_parallelism=4, nodes_per_trial=2, processes_per_trial=2,
                           sbatch={"qos": "high", "constraint": "a100|h100", "gres": "gpu:a100:2", "exclusive": True,
                                   "signal": "USR2@90", "time-min": 30})
    lines = sbatch_script(legit)
    assert directives_then_command(lines), lines
    assert lines[lines.index("# command"):] == sbatch_script(ExecutorConfig(kind="slurm"))[
        sbatch_script(ExecutorConfig(kind="slurm")).index("# command"):]
    for flag in ("--partition=a100,h100", "--account=lab-1.x", "--qos=high", "--exclusive", "--nodes=2",
                 "--gpus-per-node=1", "--cpus-per-task=4", "--mem=32GB", "--signal=USR2@90"):
        assert any(line.startswith(f"#SBATCH {flag}") for line in lines), (flag, lines)
    # what the load-time check prevents: the same builder turns a newline into a line that bash runs
    hostile = ExecutorConfig.model_construct(**(legit.model_dump() | {"partition": "a100\ntouch /tmp/PWNED #"}))
    assert not directives_then_command(sbatch_script(hostile))
    assert _as_sbatch_flag("partition", "a\nb").count("\n") == 1


@pytest.mark.parametrize(("override", "expected"), [
    (["base.trainer.num_generations=1"], r"base.trainer: num_generations is 1; allowed: 2 or more"),
    (["base.trainer.per_device_train_batch_size=3", "base.trainer.num_generations=2"],
     r"base.trainer: the generation batch \(per_device_train_batch_size 3 x 1 process\(es\) x 1 step\(s\) = 3 "
     r"completions\) is not a multiple of num_generations 2"),
    (["base.trainer.generation_batch_size=12"],
     r"generation_batch_size 12 is not a multiple of per_device_train_batch_size 8 x 1 process\(es\) = 8"),
    (["base.model.path=/tmp"], r"base.model.path: /tmp is not a model directory: no config.json"),
])
def test_trl_batch_rules_and_model_directories_are_checked_at_load(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_spec(SMOKE, override)


def test_the_batch_rule_counts_the_processes_of_a_multi_process_trial():
    spec = load_spec(SMOKE, ["base.trainer.per_device_train_batch_size=6", "executor.processes_per_trial=2"])
    assert spec.executor.processes_per_trial == 2  # 12 completions a step: groups of 4 fit
    with pytest.raises(ConfigError, match=r"per_device_train_batch_size 6 x 1 process\(es\)"):
        load_spec(SMOKE, ["base.trainer.per_device_train_batch_size=6"])


def test_a_model_directory_needs_weights_and_a_tokenizer_that_loads(tmp_path):
    model = tiny_model_dir(tmp_path / "model")
    assert load_spec(SMOKE, [f"base.model.path={model}"])
    (model / "tokenizer.json").write_text("{not json")
    with pytest.raises(ConfigError, match=rf"base.model.path: {model}: its tokenizer does not load \("):
        load_spec(SMOKE, [f"base.model.path={model}"])
    (model / "tokenizer.json").unlink()
    with pytest.raises(ConfigError, match=rf"base.model.path: {model} is not a model directory: no tokenizer"):
        load_spec(SMOKE, [f"base.model.path={model}"])
    (model / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=rf"base.model.path: {model} is not a model directory: no weights"):
        load_spec(SMOKE, [f"base.model.path={model}"])


def data_task(path: Path, name: str = "jsonl") -> str:
    return f"base.task={{name: {name}, path: {path}, train_path: {path}, n_train: 4, n_test: 4}}"


JSON_LINES_CASES = [
    ("scalars.jsonl", b"1\n2\n", r"scalars.jsonl:1: a JSON int; expected one JSON object a line"),
    ("array.jsonl", b'[{"question": "q", "answer": "1"}]\n', r"array.jsonl:1: a JSON list; expected one JSON object"),
    ("latin1.jsonl", GSM8K_ROW.encode() + '{"question": "caf\xe9", "answer": "#### 1"}\n'.encode("latin-1"),
     r"latin1.jsonl:2: not UTF-8 text \(byte 0xe9\); expected a UTF-8 file"),
    ("torn.jsonl", GSM8K_ROW.encode() + b'{"question": \n', r"torn.jsonl:2: not valid JSON"),
]


@pytest.mark.parametrize(("family", "name", "content", "expected"), [
    *[("jsonl", *case) for case in JSON_LINES_CASES],
    *[("gsm8k", *case) for case in JSON_LINES_CASES],
    ("jsonl", "rows.json", b"[1, 2]", r"rows.json: row 1 is a JSON int; expected a list of JSON objects"),
    ("jsonl", "data.txt", GSM8K_ROW.encode(), r"data.txt: unknown format '.txt'; use one of .jsonl, .json, .parquet"),
    ("jsonl", "noanswer.csv", b"question,answer\nWhat?,\n", r"noanswer.csv:1: no final answer"),
])
def test_bad_data_files_fail_at_load_naming_the_file_and_line(tmp_path, family, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"base.task: {tmp_path}/{expected}") as error:
        load_spec(SMOKE, [data_task(path, family)])
    assert "\n" not in str(error.value)


def test_the_cli_names_the_bad_data_file_in_one_line_and_writes_nothing(tmp_path):
    path = tmp_path / "scalars.jsonl"
    path.write_text("1\n")
    result = subprocess.run([sys.executable, "-m", "harness.sweep", str(SMOKE), "--runs-dir", str(tmp_path / "run"),
                             "--set", data_task(path)], cwd=ROOT, capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and f"{path}:1: a JSON int" in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_a_300_character_name_is_refused_at_load():
    with pytest.raises(ConfigError, match=r"\n  name: String should have at most 100 characters"):
        load_spec(SMOKE, ["name=" + "x" * 300])


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    lines = SMOKE.read_text().splitlines()
    path.write_text("\n".join(lines + ["seeds: 1"]) + "\n")
    first = next(number for number, line in enumerate(lines, start=1) if line.startswith("seeds:"))
    with pytest.raises(ConfigError, match=rf"^{path}: key 'seeds' given twice \(lines {first} and {len(lines) + 1}\)"):
        read_yaml(path)
    nested = tmp_path / "nested.yaml"
    nested.write_text("name: x\nbase:\n  trainer: {max_steps: 2}\n  trainer: {max_steps: 3}\n")
    with pytest.raises(ConfigError, match=r"key 'trainer' given twice \(lines 3 and 4\)"):
        load_spec(nested)
    with pytest.raises(ConfigError, match=r"key 'a' given twice"):
        load_spec(SMOKE, ["base.trainer={a: 1, a: 2}"])


def test_repeated_items_are_kept_once_with_a_warning_naming_the_file_at_load_and_in_the_trial(tmp_path, capsys):
    path = tmp_path / "copies.jsonl"
    path.write_text(GSM8K_ROW * 20 + GSM8K_ROW.replace("2 + 3", "1 + 1").replace("= 5", "= 2").replace("#### 5",
                                                                                                      "#### 2"))
    load_spec(SMOKE, [data_task(path, "gsm8k")])
    warning = f"warning: {path}: 19 of 21 records repeat the question of an earlier one (same item id)"
    assert capsys.readouterr().err.count(warning) == 1
    with pytest.warns(RepeatedItems, match="19 of 21 records"):
        splits = load_task(TaskConfig(name="gsm8k", path=str(path), train_path=str(path), n_test=8))
    assert [r["question"] for r in splits.test] == ["What is 2 + 3?", "What is 1 + 1?"]


@pytest.mark.parametrize(("name", "text"), [
    ("bom.csv", "question,answer\nWhat is 2 + 3?,5\n"),
    ("bom.jsonl", GSM8K_ROW),
    ("bom.json", "[" + GSM8K_ROW.strip() + "]"),
])
def test_a_byte_order_mark_is_accepted_in_every_format(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_benchmark(path)[0]["question"] == "What is 2 + 3?"
    if name.endswith(".jsonl"):
        assert load_gsm8k_jsonl(path)[0]["question"] == "What is 2 + 3?"
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(b"\xef\xbb\xbf" + SMOKE.read_bytes())
    assert read_yaml(spec)["name"] == "smoke"


def test_no_warning_for_a_file_of_distinct_items():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_task(TaskConfig(name="gsm8k", path=str(ROOT / "tests/fixtures/gsm8k_test_300.jsonl"),
                                        train_path=str(ROOT / "tests/fixtures/gsm8k_test_300.jsonl"))).test) == 300
