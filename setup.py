"""Build the optional C core (prioomd._select, the walk; prioomd._idle, the idle sampler).

The pure-Python twins (prioomd._select_py, prioomd._idle_py) give identical results, so a
build without a compiler still installs a working prioomd; set
PRIOOMD_REQUIRE_C=1 to make a failed C build an error (CI does).
"""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # compiler missing or broken
            if os.environ.get("PRIOOMD_REQUIRE_C") == "1":
                raise
            print(f"warning: C core not built ({exc}); the Python walk will be used")


setup(
    ext_modules=[
        Extension(
            "prioomd._select",
            sources=["prioomd/_select.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11"],
        ),
        Extension(
            "prioomd._idle",
            sources=["prioomd/_idle.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11", "-D_GNU_SOURCE"],
        ),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
