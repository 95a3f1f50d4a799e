"""A hostile tenant for the VM tests: a memory hog (hog.py) that fights its killer.

    python -I -S tenant.py HOLD RATE|leak CAP READY_FD zero|random UID MODE [ARG...]

The first five arguments are hog.py's: hold HOLD bytes, write "ready" to READY_FD,
then grow by RATE bytes/s.  UID >= 0: drop to that uid and gid first, as the user of
a delegated subtree.  Then, between allocations and as fast as it can, MODE:

    rename              write a new name to /proc/self/comm each turn, cycling through
                        hostile ones: the high-priority hogs' own "python3", a newline,
                        a stat-line lookalike ") R 1 (", a kernel thread's name
    name NAME           set /proc/self/comm to NAME once (e.g. with a newline)
    move CG_A CG_B      write "0" (itself) to the other cgroup's cgroup.procs each turn:
                        it moves back and forth between two cgroups it owns
    fork                fork a child that exits at once, each turn, and reap it
    leader-exit         grow in a second thread while the main (leader) thread leaves
                        with the raw exit syscall: a zombie leader, a live process
    xattr CG NAME=VALUE...
                        set these xattrs on cgroup directory CG, then just grow

Built-in modules only (-I -S), as hog.py; Scenario.hog(..., program=TENANT) starts it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hog  # noqa: E402

SYS_EXIT = 60  # x86_64: ends the calling thread only (exit_group is 231)
NAMES = (b"python3", b"ten\nant", b") R 1 (x", b"kworker/0:1", b"renamed")


def renamer():
    state = [0]

    def turn():
        state[0] += 1
        with open("/proc/self/comm", "wb") as f:
            f.write(NAMES[state[0] % len(NAMES)])

    return turn


def mover(cg_a, cg_b):
    targets = [os.path.join(cg, "cgroup.procs") for cg in (cg_b, cg_a)]
    state = [0]

    def turn():
        state[0] += 1
        with open(targets[state[0] % 2], "w") as f:
            f.write("0")

    return turn


def forker():
    def turn():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

    return turn


def leader_exit(hog_argv):
    import ctypes
    import threading

    threading.Thread(target=hog.main, args=(hog_argv,), daemon=True).start()
    # CDLL calls release the GIL, so the grower thread goes on after this thread is gone.
    ctypes.CDLL(None, use_errno=True).syscall(SYS_EXIT, 0)
    raise SystemExit("exit syscall returned")


def main(argv):
    hog_argv, uid, mode, args = argv[:6], int(argv[6]), argv[7], argv[8:]
    if uid >= 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    turn = None
    if mode == "rename":
        turn = renamer()
    elif mode == "name":
        with open("/proc/self/comm", "wb") as f:
            f.write(os.fsencode(args[0]))
    elif mode == "move":
        turn = mover(*args)
    elif mode == "fork":
        turn = forker()
    elif mode == "leader-exit":
        leader_exit(hog_argv)
    elif mode == "xattr":
        for item in args[1:]:
            name, _, value = item.partition("=")
            os.setxattr(args[0], name, value.encode())
    else:
        raise SystemExit(f"tenant: unknown mode {mode!r}")
    hog.main(hog_argv, turn)


if __name__ == "__main__":
    main(sys.argv)
