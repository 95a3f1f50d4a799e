"""selfprotect: mlockall with its MCL_ONFAULT fallback, oom_score_adj, warnings not errors."""

from __future__ import annotations

import errno
import os
from types import SimpleNamespace

import pytest

from prioomd import selfprotect
from prioomd.syscalls import MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT


class FakeLock:
    def __init__(self, *errnos: int) -> None:
        self.errnos = list(errnos)  # raised in turn; then success
        self.calls: list[int] = []

    def __call__(self, flags: int) -> None:
        self.calls.append(flags)
        if self.errnos:
            err = self.errnos.pop(0)
            raise OSError(err, os.strerror(err))


@pytest.fixture
def proc(tmp_path) -> str:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "oom_score_adj").write_text("0\n")
    return str(tmp_path)


def test_lock_memory_first_try():
    lock = FakeLock()
    assert selfprotect.lock_memory(lock) is None
    assert lock.calls == [MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT]


def test_lock_memory_without_onfault_on_old_kernels():
    lock = FakeLock(errno.EINVAL)
    assert selfprotect.lock_memory(lock) is None
    assert lock.calls == [MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT, MCL_CURRENT | MCL_FUTURE]


@pytest.mark.parametrize("errnos", [(errno.ENOMEM,), (errno.EPERM,), (errno.EINVAL, errno.ENOMEM)])
def test_lock_memory_failure_is_a_warning(errnos):
    warning = selfprotect.lock_memory(FakeLock(*errnos))
    assert warning is not None and warning.startswith("mlockall failed")


def test_protect_self_all_good(proc):
    assert selfprotect.protect_self(proc, lock=FakeLock()) == []
    with open(os.path.join(proc, "self", "oom_score_adj")) as f:
        assert f.read() == "-1000"


def test_protect_self_collects_both_warnings(tmp_path):
    warnings = selfprotect.protect_self(str(tmp_path), lock=FakeLock(errno.EPERM))
    assert len(warnings) == 2
    assert warnings[0].startswith("mlockall failed")
    assert "cannot set oom_score_adj -1000" in warnings[1]


def test_oom_score_adj_without_cap_sys_resource(monkeypatch, proc):
    def eacces(fd: int, data: bytes) -> int:  # what lowering gives without the capability
        raise PermissionError(errno.EACCES, "Permission denied")

    shim = SimpleNamespace(open=os.open, close=os.close, write=eacces,
                           O_WRONLY=os.O_WRONLY, O_CLOEXEC=os.O_CLOEXEC)
    monkeypatch.setattr(selfprotect, "os", shim)  # selfprotect's os only, not pytest's
    warning = selfprotect.set_oom_score_adj(proc)
    assert warning is not None and "CAP_SYS_RESOURCE" in warning
