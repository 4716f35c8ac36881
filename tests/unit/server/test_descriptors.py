"""How the open-file limit is shared between segment files and everything else."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

from strom.server.descriptors import MIN_RESERVE, segment_file_bound


def test_default_bound_keeps_a_quarter_for_connections() -> None:
    assert segment_file_bound(-1, 20_000) == 15_000
    assert segment_file_bound(-1, 1_048_576) == 786_432


def test_a_small_limit_still_keeps_the_minimum_reserve() -> None:
    assert segment_file_bound(-1, 256) == 256 - MIN_RESERVE
    assert segment_file_bound(-1, 64) == 16  # the floor: a broker still opens some files


def test_configured_bound_is_lowered_to_what_the_limit_allows() -> None:
    assert segment_file_bound(1000, 20_000) == 1000
    assert segment_file_bound(50_000, 20_000) == 15_000
    assert segment_file_bound(0, 20_000) == 1


def test_start_up_raises_the_soft_limit_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)
    script = textwrap.dedent(
        f"""
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, ({low}, {hard}))
        from strom.server.descriptors import raise_open_file_limit
        print(raise_open_file_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == [str(hard), str(hard)]
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)


def test_the_reserve_lets_an_import_run_when_descriptors_are_out() -> None:
    """Every descriptor taken: importing a module fails; through the reserve it succeeds, and
    the reserve is whole again afterwards (the import closed what it opened)."""
    script = textwrap.dedent(
        """
        import os, resource
        from strom.server.descriptors import DescriptorReserve
        reserve = DescriptorReserve(2)
        top = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (top + 8, hard))
        reserve.refill()
        held = []
        while True:
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        def load():
            import json.tool  # not imported yet: opens its source or bytecode
            return "loaded"
        try:
            load()
            print("imported without the reserve")
        except OSError:
            pass
        print(reserve.run(load), len(reserve))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["loaded", "2"]
