"""Local CPU and memory limits through cgroups."""

import subprocess

import pytest

from scenarios.limits import CgroupLimits

V1_PROC_CGROUP = """\
9:name=systemd:/
4:memory:/lab/box
2:cpuacct:/
1:cpu:/
0::/
"""


def fake_v1_tree(root):
    (root / "cpu").mkdir()
    (root / "memory" / "lab" / "box").mkdir(parents=True)


@pytest.mark.unit
def test_v1_cgroups_get_the_quota_and_the_memory_limit(tmp_path):
    fake_v1_tree(tmp_path)
    limits, why = CgroupLimits.create("run1", 0.5, 256 * 2 ** 20, root=tmp_path,
                                      proc_cgroup=V1_PROC_CGROUP)
    assert why == "" and limits is not None
    cpu, memory = tmp_path / "cpu" / "run1", tmp_path / "memory" / "lab" / "box" / "run1"
    assert limits.directories == [cpu, memory]
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000\n"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000\n"
    assert (memory / "memory.limit_in_bytes").read_text() == f"{256 * 2 ** 20}\n"


@pytest.mark.unit
def test_v1_without_a_memory_hierarchy_says_why(tmp_path):
    (tmp_path / "cpu").mkdir()
    limits, why = CgroupLimits.create("run1", 1, 2 ** 30, root=tmp_path,
                                      proc_cgroup=V1_PROC_CGROUP)
    assert limits is None
    assert "memory" in why and str(tmp_path / "memory") in why


@pytest.mark.unit
def test_v2_without_delegated_controllers_says_why(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    (tmp_path / "lab").mkdir()
    # a plain folder: the kernel would have filled cgroup.controllers in the new cgroup
    limits, why = CgroupLimits.create("run1", 1, 2 ** 30, root=tmp_path, proc_cgroup="0::/lab\n")
    assert limits is None and "cannot" in why
    assert not (tmp_path / "lab" / "run1").exists() and not (tmp_path / "run1").exists()


@pytest.mark.integration
def test_wrap_joins_every_cgroup_before_exec(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b b"
    first.mkdir()
    second.mkdir()
    wrapped = CgroupLimits([first, second]).wrap(["sh", "-c", "echo $$"])
    result = subprocess.run(wrapped, capture_output=True, text=True, check=True)
    pid = result.stdout.strip()
    # the same pid joined both groups and then became the command (exec, no fork)
    assert (first / "cgroup.procs").read_text().strip() == pid
    assert (second / "cgroup.procs").read_text().strip() == pid


@pytest.mark.integration
def test_real_cgroup_holds_the_process_and_its_children():
    limits, why = CgroupLimits.create("fileserver-lab-test", 0.25, 128 * 2 ** 20)
    if limits is None:
        pytest.skip(f"no writable cgroup here (not root?): {why}")
    try:
        command = limits.wrap(["sh", "-c", "sh -c 'cat /proc/self/cgroup'"])
        lines = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        assert "fileserver-lab-test" in lines      # the grandchild is inside too
        for directory in limits.directories:
            quota = directory / "cpu.cfs_quota_us"
            if quota.exists():
                assert quota.read_text().strip() == "25000"
            cpu_max = directory / "cpu.max"
            if cpu_max.exists():
                assert cpu_max.read_text().split()[0] == "25000"
    finally:
        limits.remove()
    assert not any(directory.exists() for directory in limits.directories)
