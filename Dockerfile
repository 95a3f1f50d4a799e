# prioomd in a container. It must see the host's processes and cgroups:
#   docker run --rm --privileged --pid=host --cgroupns=host \
#     -v /sys/fs/cgroup:/sys/fs/cgroup -v /etc/prioomd:/etc/prioomd:ro \
#     -v /var/log/prioomd:/var/log/prioomd prioomd run --dry-run
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libsystemd-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml setup.py README.md /src/
COPY prioomd /src/prioomd
RUN PRIOOMD_REQUIRE_C=1 pip install --no-cache-dir "/src[daemon]" \
 && apt-get purge -y gcc libc6-dev pkg-config && apt-get autoremove -y \
 && python -c "import prioomd._select"
COPY etc/prioomd.toml /etc/prioomd/prioomd.toml
ENTRYPOINT ["prioomd"]
CMD ["run", "--dry-run"]
