"""prioomd: Alibaba's memcg priority OOM semantics for any cgroup v2 host, from userspace."""

__version__ = "0.1.0"
