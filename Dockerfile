# prioomd in a container: build with `bash deploy/image/build.sh` (it makes the Debian
# base image locally when no registry is reachable, then runs buildah or docker).
#
# Stage 1 builds the wheels (prioomd with its C walk, systemd-python against
# libsystemd) and runs the unit tests against the installed wheel. Stage 2 is a slim
# runtime holding only a venv installed from those wheels. The image runs `prioomd run`;
# arguments after the image name replace `run` (`... localhost/prioomd --version`,
# `... localhost/prioomd run --dry-run`, `... localhost/prioomd tree`).
#
# Run it on the host it protects (the daemon acts on the host's processes and cgroups):
#
#   podman run -d --name prioomd --pid=host --cgroupns=host \
#     -v /sys/fs/cgroup:/sys/fs/cgroup \
#     -v /etc/prioomd:/etc/prioomd:ro -v /var/log/prioomd:/var/log/prioomd \
#     --cap-drop=ALL --cap-add=KILL --cap-add=SYS_ADMIN --cap-add=SYS_RESOURCE \
#     --cap-add=SYS_PTRACE --cap-add=DAC_READ_SEARCH --cap-add=IPC_LOCK \
#     --cap-add=SYSLOG --device=/dev/kmsg:/dev/kmsg:r \
#     --security-opt=apparmor=unconfined --security-opt=no-new-privileges \
#     --read-only localhost/prioomd
#
#   --pid=host          the victims are the host's processes: /proc must list them, and
#                       pidfd_open()/kill() must reach them.
#   --cgroupns=host     cgroup paths in /proc/PID/cgroup and the tree under
#   -v /sys/fs/cgroup   /sys/fs/cgroup must be the host's (writable: cgroup.kill,
#                       memory.high of guarded domains, PSI triggers). In a private
#                       cgroup namespace prioomd still works: it reads the host paths
#                       from the mount and says so at start.
#   CAP_KILL            signal processes of other users.
#   CAP_SYS_ADMIN       only to read trusted.prioomd.* xattrs (and for `prioomd set`);
#                       without it rules from the config and user.* xattrs still work.
#   CAP_SYS_RESOURCE    PSI trigger windows under 2 s, and oom_score_adj -1000 on itself.
#   CAP_SYS_PTRACE      process_mrelease() and /proc/PID/* of other users' processes.
#   CAP_DAC_READ_SEARCH read /proc/PID files of processes that restrict them.
#   CAP_IPC_LOCK        mlockall() beyond RLIMIT_MEMLOCK: the kill path is never paged out.
#   CAP_SYSLOG and      read the kernel's oom-kill lines: a kill at a container's own
#   /dev/kmsg (read)    memory.max is not a miss of the root domain. Without them every
#                       kernel OOM kill of the host counts as one (said at start).
#   --privileged is the blunt alternative to this list.
#
# hadolint: lint with `hadolint Dockerfile` (tests/image/check.sh does).
ARG BASE=docker.io/library/debian:bookworm-slim

FROM ${BASE} AS build
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev gcc libc6-dev libsystemd-dev pkg-config \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
# The package index and its CA bundle, as on the building host (build.sh passes them:
# behind a TLS-intercepting proxy pip needs the host's CA, mounted by the build).
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_CERT
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY prioomd prioomd
# The C walk is required here: a failed compile fails the build.
ENV PRIOOMD_REQUIRE_C=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip install "wheel>=0.40" \
 && /opt/build/bin/pip wheel --wheel-dir /wheels ".[daemon,metrics]"
# Unit tests against the installed wheel, not the source tree: /t has no prioomd/.
COPY tests /t/tests
COPY etc /t/etc
COPY deploy /t/deploy
COPY man /t/man
COPY bench /t/bench
COPY pyproject.toml README.md /t/
WORKDIR /t
RUN python3 -m venv /opt/test \
 && /opt/test/bin/pip install --no-index --find-links /wheels "prioomd[daemon,metrics]" \
 && /opt/test/bin/pip install "pytest>=7" "hypothesis>=6" \
 && /opt/test/bin/python -c "import prioomd._select" \
 && /opt/test/bin/python -m pytest tests/unit -q -p no:cacheprovider

FROM ${BASE}
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv libsystemd0 \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN python3 -m venv /opt/prioomd \
 && /opt/prioomd/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
        --find-links /wheels "prioomd[daemon,metrics]" \
 && /opt/prioomd/bin/pip uninstall -y --disable-pip-version-check pip setuptools \
 && rm -rf /wheels \
 && /opt/prioomd/bin/python -c "import prioomd._select"
COPY etc/prioomd.toml /etc/prioomd/prioomd.toml
COPY etc/presets /etc/prioomd/presets
COPY deploy/kubernetes/pod-priority-hook.py /usr/local/lib/prioomd/pod-priority-hook.py
ENV PATH=/opt/prioomd/bin:$PATH PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["prioomd"]
CMD ["run"]
