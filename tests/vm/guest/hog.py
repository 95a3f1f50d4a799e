"""A memory hog for the VM tests: holds, grows or leaks anonymous memory until killed.

    python -I -S hog.py HOLD_BYTES RATE_BYTES_PER_S|leak CAP_BYTES READY_FD zero|random

1. Makes HOLD_BYTES of private anonymous memory resident (charged to its cgroup).
2. Writes "ready <bytes>\\n" to READY_FD (if >= 0) and closes it.
3. Grows by RATE_BYTES_PER_S ("leak": as fast as it can) up to CAP_BYTES (0: no cap),
   then holds what it has until a signal ends it.

Pages are faulted in by the kernel with MADV_POPULATE_WRITE (2-3x faster under TCG than
touching them from Python); if that fails (a limit, a racing OOM kill) the pages are
touched one by one, as a real program would.  "zero" leaves them zero-filled (cheapest);
"random" also writes incompressible bytes, for tests with zram or zswap, which would
otherwise store zero pages for free.

Built-in modules only and no site (-I -S): under TCG every import and bytecode costs
~20x.  Scenario.hog() in scenario.py is the way to start it.
"""

import mmap
import os
import signal
import sys
import time

CHUNK = 1 << 20  # bytes per mapping: small enough to follow a rate closely
MADV_POPULATE_WRITE = 23  # <linux/mman.h>, Linux 5.14; not exported by Python 3.11


def main(argv, turn=None):
    """Hold, report ready, grow.  `turn` (tenant.py's hostile act), when given, is
    called between allocations instead of sleeping, and forever once grown."""
    hold, rate, cap, ready_fd, fill = argv[1:6]
    hold, cap, ready_fd = int(hold), int(cap), int(ready_fd)
    leak = rate == "leak"
    rate = 0.0 if leak else float(rate)
    block = os.urandom(CHUNK) if fill == "random" else None
    held = []

    def grab():
        m = mmap.mmap(-1, CHUNK, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        try:
            m.madvise(MADV_POPULATE_WRITE)
        except OSError:
            for i in range(0, CHUNK, mmap.PAGESIZE):
                m[i] = 1
        if block is not None:
            m.write(block)
        held.append(m)

    while len(held) * CHUNK < hold:
        grab()
    if ready_fd >= 0:
        os.write(ready_fd, b"ready %d\n" % (len(held) * CHUNK))
        os.close(ready_fd)

    base = len(held)
    t0 = time.monotonic()
    while leak or rate > 0:
        if cap and len(held) * CHUNK >= cap:
            break
        due = base + int(rate * (time.monotonic() - t0) / CHUNK)
        if leak or len(held) < due:
            grab()
        elif turn is None:
            time.sleep(max(0.0, (due + 1 - base) * CHUNK / rate - (time.monotonic() - t0)))
        if turn is not None:
            turn()
    while turn is not None:
        turn()
    while True:
        signal.pause()


if __name__ == "__main__":
    main(sys.argv)
