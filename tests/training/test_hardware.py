"""trainer.precision=auto and the CPU feature check behind it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brats_seg.errors import ConfigError
from brats_seg.training.hardware import auto_precision, cpu_supports_bf16, resolve_precision

from conftest import run_cli

ZEN3_FLAGS = "flags\t\t: fpu sse sse2 avx f16c fma avx2 bmi2 vaes vpclmulqdq"
ZEN4_FLAGS = ZEN3_FLAGS + " avx512f avx512bw avx512vl avx512_bf16"
SAPPHIRE_RAPIDS_FLAGS = ZEN3_FLAGS + " avx512f amx_bf16 amx_tile amx_int8"


def test_bf16_is_read_from_the_cpu_flags():
    assert not cpu_supports_bf16(ZEN3_FLAGS)
    assert cpu_supports_bf16(ZEN4_FLAGS)
    assert cpu_supports_bf16(SAPPHIRE_RAPIDS_FLAGS)
    assert not cpu_supports_bf16("flags: avx512f avx512bw")  # AVX-512 alone has no bf16 arithmetic


@pytest.mark.parametrize(
    ("gpus", "cpu_bf16", "expected"),
    [
        ([], False, "float32"),
        ([], True, "mixed_bfloat16"),
        ([(8, 0)], False, "mixed_bfloat16"),  # A100
        ([(9, 0), (8, 6)], False, "mixed_bfloat16"),
        ([(7, 0)], True, "mixed_float16"),  # V100: no bf16 tensor cores, whatever the CPU
        ([(8, 0), (7, 5)], False, "mixed_float16"),  # mixed cards: the oldest decides
    ],
)
def test_auto_precision(gpus, cpu_bf16, expected):
    assert auto_precision(gpus, cpu_bf16) == expected


def test_auto_on_this_machine_follows_its_gpus_else_its_cpu():
    from brats_seg.training.hardware import _gpu_compute_capabilities

    gpus = _gpu_compute_capabilities()
    if gpus:  # a GPU host: the oldest card decides (bf16 tensor cores from compute capability 8.0)
        expected = "mixed_bfloat16" if min(gpus) >= (8, 0) else "mixed_float16"
    else:
        flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        bf16 = {"avx512_bf16", "amx_bf16"} & set(flags.split())
        expected = "mixed_bfloat16" if bf16 else "float32"
    assert resolve_precision("auto") == expected


def test_explicit_policies_pass_through_and_others_are_refused():
    for name in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert resolve_precision(name) == name
    with pytest.raises(ConfigError, match="trainer.precision='bf16'"):
        resolve_precision("bf16")


def _keeps_freed_memory(env: dict[str, str]) -> str:
    import os
    import subprocess
    import sys

    code = "from brats_seg.memory import keep_freed_memory; print(keep_freed_memory())"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="glibc on Linux only")
def test_freed_memory_is_kept_unless_the_user_tuned_malloc():
    assert _keeps_freed_memory({}) == "True"
    assert _keeps_freed_memory({"MALLOC_ARENA_MAX": "2"}) == "False"


# ------------------------------------------------------------------------ multi-worker roles, SLURM


def test_the_chief_is_worker_0_unless_the_cluster_has_a_chief():
    from brats_seg.training.cluster import role_from_tf_config

    workers = {"worker": ["a:1", "b:1"]}

    def role(cluster, task_type, index):
        task = {"type": task_type, "index": index}
        return role_from_tf_config({"cluster": cluster, "task": task})

    assert role(workers, "worker", 0).is_chief
    second = role(workers, "worker", 1)
    assert not second.is_chief and second.workers == 2
    assert second.scratch_dir("/r").name == ".worker-1"
    with_chief = {"chief": ["c:1"], **workers}
    assert role(with_chief, "chief", 0).is_chief
    assert not role(with_chief, "worker", 0).is_chief
    with pytest.raises(ConfigError, match="TF_CONFIG: task 'worker' 2"):
        role_from_tf_config({"cluster": workers, "task": {"type": "worker", "index": 2}})


def test_only_multiworker_reads_the_cluster():
    from brats_seg.training.cluster import worker_role

    cluster = {"worker": ["a:1", "b:1"]}
    env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})}
    assert worker_role("auto", env).is_chief
    assert not worker_role("multiworker", env).is_chief
    with pytest.raises(ConfigError, match="TF_CONFIG: not valid JSON"):
        worker_role("multiworker", {"TF_CONFIG": "{cluster"})


def test_slurm_hostlists_and_task_counts_expand():
    from brats_seg.training.cluster import expand_hostlist, expand_tasks_per_node

    assert expand_hostlist("gpu[01-03,07],login1") == ["gpu01", "gpu02", "gpu03", "gpu07", "login1"]
    assert expand_hostlist("n[8-10]") == ["n8", "n9", "n10"]
    assert expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]


SRUN_ENV = {
    "SLURM_JOB_ID": "4242",
    "SLURM_STEP_NODELIST": "gpu[01-02]",
    "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
    "SLURM_STEP_NUM_TASKS": "4",
}


def test_srun_tasks_become_tf_config():
    from brats_seg.training.cluster import slurm_tf_config, worker_role

    task3 = {"SLURM_PROCID": "3", "SLURM_NODEID": "1", "SLURM_LOCALID": "1"}
    config = slurm_tf_config({**SRUN_ENV, **task3})
    base = 15000 + 4242
    assert config == {
        "cluster": {
            "worker": [f"gpu01:{base}", f"gpu01:{base + 1}", f"gpu02:{base}", f"gpu02:{base + 1}"]
        },
        "task": {"type": "worker", "index": 3},
    }
    ports = {"SLURM_PROCID": "0", "SLURM_STEP_RESV_PORTS": "12000-12001"}
    reserved = slurm_tf_config({**SRUN_ENV, **ports})
    assert reserved["cluster"]["worker"][:2] == ["gpu01:12000", "gpu01:12001"]
    assert worker_role("multiworker", {**SRUN_ENV, "SLURM_PROCID": "0"}).is_chief
    assert not worker_role("multiworker", {**SRUN_ENV, "SLURM_PROCID": "2"}).is_chief
    assert slurm_tf_config({"SLURM_JOB_ID": "1"}) is None  # sbatch script outside srun: no step


def test_cyclic_srun_layout_is_refused():
    from brats_seg.training.cluster import slurm_tf_config

    with pytest.raises(ConfigError, match="distribution=block"):
        cyclic = {"SLURM_PROCID": "1", "SLURM_NODEID": "1", "SLURM_LOCALID": "0"}
        slurm_tf_config({**SRUN_ENV, **cyclic})


def test_export_writes_tf_config_under_srun_only_for_multiworker(monkeypatch):
    import os

    from brats_seg.training.cluster import export_tf_config

    monkeypatch.setenv("TF_CONFIG", "")  # so that the test's TF_CONFIG is removed again afterwards
    monkeypatch.delenv("TF_CONFIG")
    for key, value in {**SRUN_ENV, "SLURM_PROCID": "1"}.items():
        monkeypatch.setenv(key, value)
    export_tf_config("mirrored")
    assert "TF_CONFIG" not in os.environ
    export_tf_config("multiworker")
    assert json.loads(os.environ["TF_CONFIG"])["task"] == {"type": "worker", "index": 1}


# --------------------------------------------------------------------------- GPUs


def test_parallel_jobs_take_distinct_gpus_then_share_round_robin(tmp_path):
    from brats_seg.training.gpus import GpuSlots

    slots = [GpuSlots(["0", "1"], lock_dir=tmp_path) for _ in range(4)]
    taken = [slot.claim() for slot in slots]
    assert sorted(taken[:2]) == [0, 1]
    assert taken[2:] == [0, 1]  # every GPU held: the next jobs share, in turn
    slots[0].held.release()
    assert GpuSlots(["0", "1"], lock_dir=tmp_path).claim() == taken[0]  # a freed GPU is taken again


def test_asking_for_a_gpu_without_one_is_a_one_line_error():
    from brats_seg.training.gpus import check_options, configure_gpus

    expected = r"trainer.device=gpu: TensorFlow sees no GPU .*brats-seg\[gpu\]"
    with pytest.raises(ConfigError, match=expected) as err:
        configure_gpus("gpu")
    assert "\n" not in str(err.value)
    assert configure_gpus("auto") == []  # this machine has none: CPU
    with pytest.raises(ConfigError, match="trainer.device='tpu'"):
        check_options("tpu", "auto")
    with pytest.raises(ConfigError, match="trainer.job_gpus=2"):
        check_options("auto", 2)


def test_verbose_auto_is_a_bar_on_a_terminal_and_a_line_per_epoch_otherwise(monkeypatch):
    import io

    from brats_seg.training.fit import resolve_verbose

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdout", Terminal())
    assert resolve_verbose("auto") == 1
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert resolve_verbose("auto") == 2
    assert [resolve_verbose(v) for v in (0, 1, 2)] == [0, 1, 2]
    with pytest.raises(ConfigError, match="trainer.verbose=3"):
        resolve_verbose(3)


def test_a_non_chief_worker_writes_no_hydra_files(tmp_path):
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})}
    for args in (
        ["--cfg", "hydra", "trainer=tiny"],
        ["trainer=tiny", "--cfg", "hydra"],
        ["--cfg", "hydra"],
    ):
        result = run_cli("train", *args, cwd=tmp_path, env=env, timeout=120)
        assert result.returncode == 0, (args, result.stderr[-2000:])
        assert "output_subdir: null" in result.stdout, args
